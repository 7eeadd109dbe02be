using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The asymmetric doorbell fence (<see cref="ParkBarrier"/>): a receiver whose threads issue a global expedited
/// membarrier before they park says so in its region header, and only then does a writer publish without a fence.
/// Both sides with real memfds and mappings; a lost wake shows as a wait as long as the (long) park timeout.
/// </summary>
public sealed class ParkBarrierTests
{
    private static readonly TimeSpan s_longPark = TimeSpan.FromSeconds(10);

    // A busy-spinning receiver announces the barrier; the tests park it explicitly (WaitStrategy.Park per wait), as the
    // rare waits of such a receiver that do not follow its strategy do.
    private static ChannelOptions Options(bool useBarrier = true, int rings = 64, WaitStrategy strategy = WaitStrategy.BusySpin) => new()
    {
        UseParkBarrier = useBarrier,
        RegionSize = 64L * SharedRegion.PageSize,
        TxRingCapacity = rings,
        FreeRingCapacity = rings,
        WaitStrategy = strategy,
        ParkTimeout = s_longPark,
    };

    /// <summary>A second writer over <paramref name="receiver"/>'s region (its own mapping, which it owns), with its own options.</summary>
    private static OutboundChannel WriterFor(InboundChannel receiver, ChannelOptions options) =>
        new(SharedRegion.Open(Interop.Dup(receiver.Region.Handle), receiver.Region.Size, writableBytes: receiver.Region.Size), options, new Shrinker());

    private static bool WaitParked(ChannelPair pair) =>
        pair.Inbound.WaitForTransaction(TimeSpan.FromSeconds(60), WaitStrategy.Park, CancellationToken.None);

    [Fact]
    public void Kernel_OffersTheBarrier_ThisMachineRunsTheFenceFreePath()
    {
        // Linux 4.16+ without a filter refusing membarrier: the CI machine must run the path the benchmarks measure.
        Assert.True(ParkBarrier.CanIssue, "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) is refused here");
        Assert.True(ParkBarrier.Registered, "membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) is refused here");
    }

    [Fact]
    public void Region_OfAReceiverThatIssuesTheBarrier_SaysSo_AndItsWriterRingsWithoutAFence()
    {
        using var pair = new ChannelPair(Options());
        Assert.Equal(RegionHeaderLayout.ParkBarrierFlag, pair.ReadHeader<uint>(12));
        Assert.True(pair.Inbound.ReadersParkWithBarrier);
        Assert.True(pair.Outbound.RingsWithoutFence);
    }

    [Fact]
    public void Region_OfAReceiverWithoutTheBarrier_SaysNothing_AndAWriterThatWouldSkipItFences()
    {
        var receiverOptions = Options(useBarrier: false);
        using var receiver = new ChannelPair(receiverOptions);
        Assert.Equal(0u, receiver.ReadHeader<uint>(12));
        Assert.False(receiver.Inbound.ReadersParkWithBarrier);
        // The writer would skip the fence (its own option on), but the receiver's header does not promise the barrier.
        using OutboundChannel writer = WriterFor(receiver.Inbound, Options(useBarrier: true));
        Assert.False(writer.RingsWithoutFence);
    }

    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public void Region_OfAReceiverThatParksAsARule_SaysNothing_SoItsParksCostNoBarrier(WaitStrategy strategy)
    {
        using var pair = new ChannelPair(Options(strategy: strategy));
        Assert.Equal(0u, pair.ReadHeader<uint>(12));
        Assert.False(pair.Inbound.ReadersParkWithBarrier);
        Assert.False(pair.Outbound.RingsWithoutFence);
    }

    /// <summary>
    /// A receiver that announces the barrier and parks without it: the writer skips its fence on the liar's word, so
    /// only the liar's own wakes can be lost (its park timeout still ends every park); the writer's sends, its state and
    /// its mapping are as with an honest peer.
    /// </summary>
    [Fact]
    [Trait("Category", "Hostile")]
    public async Task Receiver_AnnouncesTheBarrierAndParksWithoutIt_OnlyItsOwnWakesAreAtRisk()
    {
        ChannelOptions liarOptions = Options(useBarrier: false);
        using InboundChannel liar = InboundChannel.Create("park-barrier-liar", liarOptions);
        // The lie: the flag in its header, though its readers issue no barrier.
        liar.Region.GetSpan(12, sizeof(uint))[0] = (byte)RegionHeaderLayout.ParkBarrierFlag;
        Assert.False(liar.ReadersParkWithBarrier);
        using OutboundChannel writer = WriterFor(liar, Options());
        Assert.True(writer.RingsWithoutFence);

        const int Messages = 300;
        Task reading = Task.Run(() =>
        {
            for (int i = 0; i < Messages; i++)
            {
                TransactionRecord record;
                while (!liar.TryReceive(out record))
                {
                    liar.WaitForTransaction(TimeSpan.FromSeconds(60), WaitStrategy.Park, CancellationToken.None);
                }
                Assert.Equal((uint)i, record.Code);
                liar.Free(record);
            }
        });
        for (int i = 0; i < Messages; i++)
        {
            writer.Send(TransactionIds.AssignedOnSend, (uint)i, TransactionFlags.Oneway, [(byte)i], TestTimeouts.Long, CancellationToken.None);
            Thread.SpinWait(i % 64 * 20);
        }
        await reading.WaitAsync(TimeSpan.FromSeconds(120));
        writer.DrainFrees();
        Assert.Equal(0, writer.IgnoredFrees);
        // Only the open pack (or nothing) is still live: every message was taken and freed back.
        Assert.InRange(writer.LiveBuffers, 0, 1);
    }

    [Fact]
    public void Writer_WithTheBarrierOff_FencesEvenForAReceiverThatIssuesIt()
    {
        using var pair = new ChannelPair(Options());
        using OutboundChannel writer = WriterFor(pair.Inbound, Options(useBarrier: false));
        Assert.False(writer.RingsWithoutFence);
    }

    [Fact]
    public async Task Park_IssuesOneBarrierPerPark_AndAFenceFreePublishWakesTheReader()
    {
        using var pair = new ChannelPair(Options());
        // A first message opens a pack (a record, published with its fence); the one after it is an entry of that pack,
        // published without a fence.
        Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, 6, TransactionFlags.Oneway, [0]));
        pair.Inbound.Free(pair.ReceiveOne());
        Assert.Equal(1, pair.Outbound.PacksOpened);
        long parks = pair.Inbound.ReaderParks;
        Task<bool> waiting = Task.Run(() => WaitParked(pair));
        var parked = Stopwatch.StartNew();
        while (pair.Inbound.ReaderParks == parks && parked.Elapsed < TestTimeouts.Long)
        {
            Thread.Sleep(1);
        }
        Assert.True(pair.Inbound.ReaderParks > parks, "the reader never parked");
        Assert.True(pair.Inbound.ReaderParkBarriers >= 1, "it parked without issuing the barrier");
        Assert.Equal(pair.Inbound.ReaderParks, pair.Inbound.ReaderParkBarriers);

        var woken = Stopwatch.StartNew();
        Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, 7, TransactionFlags.Oneway, [1, 2, 3]));
        Assert.True(await waiting.WaitAsync(TestTimeouts.Long), "the publish did not wake the parked reader");
        Assert.Equal(1, pair.Outbound.PacksOpened);
        Assert.Equal(2, pair.Outbound.PackedSent);
        // Woken by the publish, not by the 10 s park timeout.
        Assert.True(woken.Elapsed < TimeSpan.FromSeconds(9), $"woken after {woken.Elapsed}");
    }

    /// <summary>
    /// The race the barrier closes: a reader parking at the moment a writer publishes without a fence. Many rounds of a
    /// writer publishing after a random short pause while the reader, parking on every wait with a 10 s park timeout (the longest allowed), alternates
    /// between finding the message and parking for it. A lost wake would cost one round the whole park timeout.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ParkAndPublish_Racing_NoWakeIsLost(bool useBarrier)
    {
        const int Rounds = 4_000;
        using var pair = new ChannelPair(Options(useBarrier, rings: 256));
        Assert.Equal(useBarrier, pair.Outbound.RingsWithoutFence);
        long taken = 0;
        Task reader = Task.Run(() =>
        {
            for (int i = 0; i < Rounds; i++)
            {
                // The wait may end with nothing to take (an open pack with no new entry wakes it too): look, then wait.
                TransactionRecord record;
                var waited = Stopwatch.StartNew();
                while (!pair.Inbound.TryReceive(out record))
                {
                    Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"round {i}: no message within 60 s");
                    WaitParked(pair);
                }
                Assert.Equal((uint)i, record.Code);
                pair.Inbound.Free(record);
                Volatile.Write(ref taken, i + 1);
            }
        });
        var random = new Random(12345);
        var worst = TimeSpan.Zero;
        for (int i = 0; i < Rounds && !reader.IsCompleted; i++)
        {
            // 0-50 µs: the publish lands before the reader parks, while it parks, or after.
            long pauseEnd = Stopwatch.GetTimestamp() + (random.Next(0, 50) * Stopwatch.Frequency / 1_000_000);
            while (Stopwatch.GetTimestamp() < pauseEnd)
            {
                Thread.SpinWait(1);
            }
            var sent = Stopwatch.StartNew();
            pair.Outbound.Send(TransactionIds.AssignedOnSend, (uint)i, TransactionFlags.Oneway, [(byte)i], TestTimeouts.Long, CancellationToken.None);
            // One message in flight per round, so each round is at most one wake.
            while (Volatile.Read(ref taken) <= i && !reader.IsCompleted && sent.Elapsed < TimeSpan.FromSeconds(40))
            {
                Thread.SpinWait(8);
            }
            worst = sent.Elapsed > worst ? sent.Elapsed : worst;
        }
        await reader.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst} to be taken: a lost wake (the park timeout is 10 s; a loaded machine has delayed one by 3 s)");
        Assert.True(pair.Inbound.ReaderParks > Rounds / 10, $"only {pair.Inbound.ReaderParks} parks in {Rounds} rounds: the race was barely run");
    }
}
