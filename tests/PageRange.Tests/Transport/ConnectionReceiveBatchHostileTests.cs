using System.Runtime.InteropServices;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A raw writer against the batched receiver: a batch whose last record is forged. The records before it are taken
/// (and the head the writer sees covers them, no more), the forged one closes only that connection, and the victim
/// lets go of its descriptors, mappings and memory. In the non-parallel collection: descriptors and mappings are
/// counted over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ConnectionReceiveBatchHostileTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Receive_ForgedRecordAfterGoodOnesInOneBatch_OnlyThatConnectionClosesAndItsResourcesGo()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        // An honest connection on the same listener, which must carry on.
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimRegion = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimRegion);
        output.WriteLine($"connected: {connected}");

        const int Good = 5;
        LayOutGoodOnewaysThenAForgedOne(attacker, victim, Good);

        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        await Assert.ThrowsAnyAsync<PageRangeException>(async () =>
        {
            while (true)
            {
                using Transaction transaction = await victim.ReceiveAsync(bound.Token).AsTask().WaitAsync(TestTimeouts.Long);
                Assert.Equal(7u, transaction.Code);
            }
        });
        // The good records were consumed in one batch, the forged one was not: the head the attacker sees says so.
        ulong head = MemoryMarshal.Read<ulong>(attacker.Handshake.PeerRegion.GetSpan(RegionHeaderLayout.TxHeadOffset, sizeof(ulong)));
        Assert.Equal((ulong)Good, head);

        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim noticed the violation");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Throws<ObjectDisposedException>(() => victim.Inbound.Region.ResidentBytes);

        // The honest connection on the same listener is untouched.
        honestClient.SendOneway(9, [1, 2, 3]);
        using Transaction honest = await honestServer.ReceiveAsync(bound.Token).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(9u, honest.Code);
        Assert.Equal([1, 2, 3], honest.Payload.ToArray());
    }

    /// <summary>
    /// Publishes <paramref name="good"/> oneways of code 7 (one record each, too large for a pack) and one more whose
    /// record the attacker then forges (a reserved word set), while the victim's reader role is held: all of it is in the
    /// ring when the victim's reader first looks.
    /// </summary>
    internal static void LayOutGoodOnewaysThenAForgedOne(RawPeer attacker, PageRangeConnection victim, int good)
    {
        Assert.True(victim.TryHoldReaderRoleForTest(), "the reader role was taken");
        try
        {
            for (int i = 0; i < good + 1; i++)
            {
                // Larger than a pack's entry may be: one record each, as the head counted by the tests.
                Assert.True(attacker.Outbound.TrySend((ulong)i + 1, 7, TransactionFlags.Oneway, new byte[PackLayout.MaxPayload + 8]));
            }
            // The last record gets a reserved word set, in the victim's region as the attacker maps it.
            long slot = attacker.Outbound.Layout.TxRingOffset + ((long)good * TransactionRecordLayout.Size);
            Span<byte> record = attacker.Handshake.PeerRegion.GetSpan(slot, TransactionRecordLayout.Size);
            TransactionRecordLayout forged = MemoryMarshal.Read<TransactionRecordLayout>(record);
            forged.Reserved1 = 1;
            MemoryMarshal.Write(record, in forged);
        }
        finally
        {
            victim.ReleaseReaderRoleForTest();
        }
    }
}
