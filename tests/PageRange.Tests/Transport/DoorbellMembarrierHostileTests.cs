using System.Diagnostics;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer that announces <see cref="RegionCapabilities.ParksWithMembarrier"/> and then parks without the membarrier
/// (transport parts, no connection: its doorbells keep the symmetric protocol). Its lie can only cost its own wakes:
/// ours skip the fence for it, so its parks may need its timeout, but our own waits end by wakes, a call it never
/// answers still times out, and our descriptors, mappings and memory are what they would be with an honest peer.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class DoorbellMembarrierHostileTests(ITestOutputHelper output)
{
    private const int Messages = 300;

    [Fact]
    public async Task Peer_AnnouncesMembarrierAndParksWithout_OnlyItsOwnWaitsPay()
    {
        // The victim's park timeout is long: a wait of ours that needed it would show as a park timeout below.
        var victimOptions = new PageRangeOptions
        {
            RegionSize = 1 << 20, TransactionRingCapacity = 64, FreeRingCapacity = 64,
            WaitStrategy = WaitStrategy.SpinThenPark, SpinDuration = TimeSpan.FromMicroseconds(1), ParkTimeout = TimeSpan.FromSeconds(10),
        };
        // The liar's backstop is short: whatever wakes it loses, it finds the messages a few milliseconds later.
        var liarOptions = new PageRangeOptions
        {
            RegionSize = 1 << 20, TransactionRingCapacity = 64, FreeRingCapacity = 64,
            WaitStrategy = WaitStrategy.SpinThenPark, SpinDuration = TimeSpan.FromMicroseconds(1), ParkTimeout = TimeSpan.FromMilliseconds(20),
        };
        string name = ControlHandshakeTests.UniqueName();
        string regions = $"pagerange:{name}";
        (int Descriptors, int Mappings) before = FaultResources.Naming(regions);
        await using (PageRangeListener listener = PageRangeListener.Listen(name, victimOptions))
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            await using Diagnostics.RawPeer liar = await Diagnostics.RawPeer.ConnectAsync(name, liarOptions);
            await using PageRangeConnection victim = await accepting.WaitAsync(TestTimeouts.Long);

            // The lie: announced in its header, and believed.
            Assert.Equal(RegionCapabilities.ParksWithMembarrier, liar.Inbound.Capabilities & RegionCapabilities.ParksWithMembarrier);
            Assert.False(liar.Inbound.UsesMembarrier);
            Assert.True(victim.Inbound.UsesMembarrier);
            Assert.True(victim.Outbound.UsesMembarrier);
            (int Descriptors, int Mappings) connected = FaultResources.Naming(regions);
            long resident = victim.Inbound.Region.ResidentBytes;

            // 1. We send (no fence: the liar promised to fence for us) and the liar parks without the membarrier:
            // every message still reaches it, its lost wakes (if any) bounded by its own park timeout.
            long delay = Stopwatch.Frequency / 10_000;
            Task<int> liarReceives = Task.Factory.StartNew(
                () =>
                {
                    int received = 0;
                    while (received < Messages)
                    {
                        if (!liar.Inbound.WaitForTransaction(TestTimeouts.Long, CancellationToken.None))
                        {
                            break;
                        }
                        while (liar.Inbound.TryReceive(out TransactionRecord record))
                        {
                            liar.Inbound.Free(record);
                            received++;
                        }
                    }
                    return received;
                },
                TaskCreationOptions.LongRunning);
            for (int i = 0; i < Messages; i++)
            {
                SpinFor(delay);
                victim.SendOneway(7, new byte[64]);
            }
            Assert.Equal(Messages, await liarReceives.WaitAsync(TestTimeouts.Long));
            output.WriteLine($"the liar parked {liar.Inbound.ReaderParks} times, {liar.Inbound.ReaderParkTimeouts} ran out its timeout");

            // 2. The liar sends (with its fence, as its symmetric doorbell does) and we park, with the membarrier:
            // every one of our waits ends by a wake.
            long parks = victim.Inbound.ReaderParks;
            long timeouts = victim.Inbound.ReaderParkTimeouts;
            Task liarSends = Task.Factory.StartNew(
                () =>
                {
                    for (int i = 0; i < Messages; i++)
                    {
                        SpinFor(delay);
                        liar.Outbound.Send((ulong)i + 1, 7, TransactionFlags.Oneway, new byte[64], TestTimeouts.Long, CancellationToken.None);
                    }
                },
                TaskCreationOptions.LongRunning);
            for (int i = 0; i < Messages; i++)
            {
                using var timeout = new CancellationTokenSource(TestTimeouts.Long);
                using Transaction received = victim.Receive(timeout.Token);
                Assert.Equal(64, received.Length);
            }
            await liarSends.WaitAsync(TestTimeouts.Long);
            output.WriteLine($"the victim parked {victim.Inbound.ReaderParks - parks} times, {victim.Inbound.ReaderParkTimeouts - timeouts} ran out its timeout");
            Assert.True(victim.Inbound.ReaderParks - parks >= Messages / 4, $"the victim parked {victim.Inbound.ReaderParks - parks} times");
            Assert.Equal(0, victim.Inbound.ReaderParkTimeouts - timeouts);

            // 3. A call the liar never answers still ends, at its deadline.
            var clock = Stopwatch.StartNew();
            Assert.Throws<TimeoutException>(() => victim.Call(8, new byte[16], TimeSpan.FromMilliseconds(200)));
            Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(150), TestTimeouts.Long);

            Assert.True(victim.IsPeerAlive);
            Assert.Equal(connected, FaultResources.Naming(regions));
            Assert.InRange(victim.Inbound.Region.ResidentBytes, 0, resident + (Messages * 4096L));
        }
        await Poll.WaitUntilAsync(() => FaultResources.Naming(regions) == before, "both regions closed and unmapped");
    }

    private static void SpinFor(long ticks)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < ticks)
        {
            Thread.SpinWait(20);
        }
    }
}
