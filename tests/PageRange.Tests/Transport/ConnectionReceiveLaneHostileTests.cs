using System.Runtime.InteropServices;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A raw writer against <see cref="PageRangeConnection.ReceiveBatch"/>'s lane: good oneways, then a forged record in the
/// same batch. The lane delivers the good ones (they came first), the forged one is never consumed and closes only that
/// connection, and the victim lets go of its descriptors, mappings and memory. In the non-parallel collection:
/// descriptors and mappings are counted over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ConnectionReceiveLaneHostileTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ReceiveBatch_ForgedRecordAfterGoodOnewaysInOneBatch_GoodOnesHandledThenOnlyThatConnectionCloses()
    {
        // The background reader's housekeeping pass reads a ring nobody read since its last pass: one between the layout
        // below and the lane's first look would route the good oneways itself and meet the forged record, and no lane
        // would run (the good ones then go unhandled with the rest of the connection, or are handled out of the ready
        // queue). A long park timeout only made that pass rare (CI still met one: 0 of 6 handled). So the victim's
        // passes leave its ring alone from here on, and the test waits for a pass made after that was set: a pass that
        // looked before (its first, say) has let the reader role go by then.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        int passes = victim.HousekeepingPassesForTest;
        victim.PumpSkipsRingForTest = true;
        await WaitUntilAsync(() => victim.HousekeepingPassesForTest > passes, "a housekeeping pass that leaves the ring alone");
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimRegion = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimRegion);
        output.WriteLine($"connected: {connected}");

        const int Good = 6;
        // All of it is in the ring when the lane first looks.
        ConnectionReceiveBatchHostileTests.LayOutGoodOnewaysThenAForgedOne(attacker, victim, Good);

        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        var handled = new int[1];
        Assert.ThrowsAny<PageRangeException>((Action)(() =>
        {
            while (true)
            {
                victim.ReceiveBatch(static (handled, in transaction) =>
                {
                    Assert.Equal(7u, transaction.Code);
                    handled[0]++;
                }, handled, PageRangeConnection.MaxReceiveBatch, bound.Token);
            }
        }));
        Assert.Equal(Good, handled[0]);
        Assert.True(victim.LaneCounts.Messages > 0, "the good oneways did not go through a lane");
        // The good records were consumed in one batch, the forged one was not: the head the attacker sees says so.
        ulong head = MemoryMarshal.Read<ulong>(attacker.Handshake.PeerRegion.GetSpan(RegionHeaderLayout.TxHeadOffset, sizeof(ulong)));
        Assert.Equal((ulong)Good, head);

        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim noticed the violation");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Throws<ObjectDisposedException>(() => victim.Inbound.Region.ResidentBytes);

        // The honest connection on the same listener is untouched, and its batches still run lanes.
        for (int i = 0; i < 3; i++)
        {
            honestClient.SendOneway(9, [1, 2, 3]);
        }
        var honest = new int[1];
        while (honest[0] < 3)
        {
            honestServer.ReceiveBatch(static (honest, in transaction) =>
            {
                Assert.Equal(9u, transaction.Code);
                Assert.Equal([1, 2, 3], transaction.Payload.ToArray());
                honest[0]++;
            }, honest, PageRangeConnection.MaxReceiveBatch, bound.Token);
        }
    }
}
