using System.Runtime.InteropServices;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A raw peer that breaks a pack, as writer (an entry longer than the bound after good ones) or as receiver (a free of
/// the victim's open pack): only that connection closes, nothing after the bad entry is delivered, the victim lets go
/// of its descriptors and mappings, and a neighbour on the same listener carries on. In the non-parallel collection:
/// descriptors and mappings are counted over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ConnectionPackHostileTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Receive_PackEntryLongerThanTheBoundAfterGoodOnes_OnlyThatConnectionClosesNothingAfterItDelivered()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimRegion = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimRegion);
        output.WriteLine($"connected: {connected}");

        const int Good = 3;
        Assert.True(victim.TryHoldReaderRoleForTest(), "the reader role was taken");
        try
        {
            for (int i = 0; i < Good + 2; i++)
            {
                Assert.True(attacker.Outbound.TrySend((ulong)i + 1, (uint)i, TransactionFlags.Oneway, new byte[64]));
            }
            long pack = attacker.Outbound.OpenPackOffset;
            Assert.True(pack >= 0);
            // Entry Good gets a length past the bound, in the victim's region as the attacker maps it.
            long entryAt = attacker.Outbound.Layout.DataOffset + pack + PackLayout.HeaderSize + (Good * PackLayout.EntrySize(64));
            Span<byte> entry = attacker.Handshake.PeerRegion.GetSpan(entryAt, PackLayout.EntryHeaderSize);
            MemoryMarshal.Write(entry, PackLayout.MaxPayload + 1);
        }
        finally
        {
            victim.ReleaseReaderRoleForTest();
        }

        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        var codes = new List<uint>();
        await Assert.ThrowsAnyAsync<PageRangeException>(async () =>
        {
            while (true)
            {
                using Transaction transaction = await victim.ReceiveAsync(bound.Token).AsTask().WaitAsync(TestTimeouts.Long);
                codes.Add(transaction.Code);
            }
        });
        // Only entries before the bad one, in order.
        Assert.True(codes.Count <= Good, $"{codes.Count} delivered");
        Assert.Equal(Enumerable.Range(0, codes.Count).Select(i => (uint)i), codes);

        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim noticed the violation");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, victim.LiveIncomingTransactions);

        honestClient.SendOneway(9, [1, 2, 3]);
        using Transaction honest = await honestServer.ReceiveAsync(bound.Token).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(9u, honest.Code);
        Assert.Equal([1, 2, 3], honest.Payload.ToArray());
    }

    [Fact]
    public async Task Receive_PackSealedEmpty_OnlyThatConnectionClosesAndLetsGoOfEverything()
    {
        // A pack that hands out nothing: republished as fast as the victim finished it, it kept one receive pass going
        // for ever (the receive lock and the reader role held, a call's timeout never checked, a dispose waiting). One
        // is a violation now; before, the victim finished it silently and the connection went on.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        await attack.ConnectNeighbourAsync();
        (int Descriptors, int Mappings) connected = FaultResources.Naming(attack.RegionName);

        Assert.True(victim.TryHoldReaderRoleForTest(), "the reader role was taken");
        try
        {
            Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.Oneway, new byte[64]));
            long pack = attacker.Outbound.OpenPackOffset;
            Assert.True(pack >= 0);
            Span<byte> word = attacker.Handshake.PeerRegion.GetSpan(attacker.Outbound.Layout.DataOffset + pack, sizeof(uint));
            MemoryMarshal.Write(word, PackLayout.SealedBit);
        }
        finally
        {
            victim.ReleaseReaderRoleForTest();
        }

        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        PageRangeException error = await Assert.ThrowsAnyAsync<PageRangeException>(async () =>
        {
            using Transaction transaction = await victim.ReceiveAsync(bound.Token).AsTask().WaitAsync(TestTimeouts.Long);
        });
        output.WriteLine(error.Message);
        await attack.AssertOnlyTheVictimClosedAsync(connected);
    }

    [Fact]
    public async Task RawPeer_FreesTheVictimsOpenPack_OnlyThatConnectionClosesAndLetsGoOfEverything()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimView = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimView);

        // The victim sends small oneways into the attacker's region: one open pack.
        for (int i = 0; i < 4; i++)
        {
            victim.SendOneway(1, new byte[64]);
        }
        Assert.True(attacker.Inbound.TryReceive(out TransactionRecord first));
        Assert.NotEqual(0, first.Pack);
        long pack = victim.Outbound.OpenPackOffset;
        Assert.True(pack >= 0);
        Assert.True(attacker.Inbound.Region.ResidentBytes > attacker.Inbound.Layout.HeaderBytes);

        // The forged free of the open pack (as the raw peer's free ring sees it: a record of its own naming the pack).
        attacker.Inbound.Free(new TransactionRecord(0, pack, PackLayout.Capacity, 0, TransactionFlags.Oneway));
        Assert.Throws<ProtocolViolationException>(() => victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]));
        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim closed the connection");
        Assert.False(victim.IsPeerAlive);
        await WaitUntilAsync(() => attacker.Inbound.Region.ResidentBytes == attacker.Inbound.Layout.HeaderBytes, "the pack's pages were given back");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Descriptors < connected.Descriptors, "the victim closed its descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Mappings < connected.Mappings, "the victim unmapped its views");

        honestClient.SendOneway(2, new byte[64]);
        using (Transaction received = await honestServer.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(2u, received.Code);
        }
        Assert.True(honestClient.IsPeerAlive);
        Assert.True(honestServer.IsPeerAlive);
    }
}
