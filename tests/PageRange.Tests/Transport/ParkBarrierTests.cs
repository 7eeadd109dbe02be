using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The asymmetric doorbell fence (<see cref="ParkBarrier"/>): a side whose threads issue a global expedited membarrier
/// before they park says so in its region header, and only then does its peer publish without a fence: records into
/// that region (its readers park with the barrier), frees into its own (that side's writer, waiting for room, parks with
/// it). Both sides with real memfds and mappings; a lost wake shows as a wait as long as the (long) park timeout.
/// </summary>
public sealed class ParkBarrierTests
{
    private static readonly TimeSpan s_longPark = TimeSpan.FromSeconds(10);

    // A busy-spinning receiver announces the barrier; the tests park it explicitly (WaitStrategy.Park per wait), as the
    // rare waits of such a receiver that do not follow its strategy do.
    internal static ChannelOptions Options(
        bool useBarrier = true, int rings = 64, WaitStrategy strategy = WaitStrategy.BusySpin, TimeSpan? parkTimeout = null, TimeSpan? spin = null) => new()
    {
        UseParkBarrier = useBarrier,
        RegionSize = 64L * SharedRegion.PageSize,
        TxRingCapacity = rings,
        FreeRingCapacity = rings,
        WaitStrategy = strategy,
        ParkTimeout = parkTimeout ?? s_longPark,
        SpinDuration = spin ?? new ChannelOptions().SpinDuration,
    };

    // Larger than a pack entry: a record (and a buffer) of its own, the kind that needs a free.
    private static readonly byte[] s_recordPayload = new byte[PackLayout.MaxPayload + 8];

    /// <summary>A second writer over <paramref name="receiver"/>'s region (its own mapping, which it owns), with its own options.</summary>
    internal static OutboundChannel WriterFor(InboundChannel receiver, ChannelOptions options) =>
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
    public void Writer_ThatBusySpins_ParksWithTheBarrierWhenItWaitsForRoom_SoItsReceiverMayFreeWithoutAFence()
    {
        using var pair = new ChannelPair(Options());
        Assert.True(pair.Outbound.PeerParksWithBarrier);
        Assert.True(pair.Outbound.RoomWaitsParkWithBarrier);
        // Frees keep their fence until the receiver hears the writer's promise (a connection: from the writer's header).
        Assert.False(pair.Inbound.FreesRingWithoutFence);
        Assert.True(pair.Inbound.PublishFreesWithoutFence());
        Assert.True(pair.Inbound.FreesRingWithoutFence);
    }

    [Fact]
    public void Receiver_WithTheBarrierOff_FencesItsFreesWhateverTheWriterPromises()
    {
        using var pair = new ChannelPair(Options(useBarrier: false));
        Assert.False(pair.Outbound.RoomWaitsParkWithBarrier);
        Assert.False(pair.Inbound.PublishFreesWithoutFence());
        Assert.False(pair.Inbound.FreesRingWithoutFence);
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

    /// <remarks>Spin-then-park announces the adaptive barrier instead (<see cref="AdaptiveParkBarrierTests"/>).</remarks>
    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public void Region_OfAReceiverThatParksAsARule_DoesNotPromiseTheBarrierAtEveryPark(WaitStrategy strategy)
    {
        using var pair = new ChannelPair(Options(strategy: strategy));
        Assert.Equal(0u, pair.ReadHeader<uint>(12) & RegionHeaderLayout.ParkBarrierFlag);
        Assert.False(pair.Inbound.ReadersParkWithBarrier);
        Assert.False(pair.Outbound.RingsWithoutFence);
        Assert.False(pair.Outbound.RoomWaitsParkWithBarrier);
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

        await StreamToALiarAsync(liar, writer);
    }

    /// <summary>
    /// Sends 300 small oneways, now and then a little apart, from <paramref name="writer"/> to <paramref name="liar"/>
    /// (which parks on every wait, with whatever barrier it does or does not issue), and checks the writer's side: every
    /// message taken in order and freed back, no free refused, only the open pack (or nothing) still live.
    /// </summary>
    /// <param name="afterSend">Runs after each send (its index): the liar's next move.</param>
    internal static async Task StreamToALiarAsync(InboundChannel liar, OutboundChannel writer, Action<int>? afterSend = null)
    {
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
            afterSend?.Invoke(i);
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
        // A first message opens a pack (a record); the one after it is an entry of that pack. Both go without a fence.
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
    /// <remarks>
    /// With every barrier refused (the kernel offered it at start and refuses it now), the writer still publishes without
    /// a fence, so a wake may be lost: each such park lasts a millisecond at most, and no round waits long.
    /// </remarks>
    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public async Task ParkAndPublish_Racing_NoWakeIsLost(bool useBarrier, bool barriersRefused)
    {
        const int Rounds = 4_000;
        using var pair = new ChannelPair(Options(useBarrier, rings: 256));
        Assert.Equal(useBarrier, pair.Outbound.RingsWithoutFence);
        if (barriersRefused)
        {
            pair.Inbound.RefuseReaderParkBarriersForTest(int.MaxValue);
        }
        // 0-50 µs: the publish lands before the reader parks, while it parks, or after.
        TimeSpan worst = await WakeRace.RunAsync(pair, Rounds, maxPauseMicroseconds: 50, seed: 12345, wait: _ => WaitParked(pair));
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst} to be taken: a lost wake (the park timeout is 10 s; a loaded machine has delayed one by 3 s)");
        Assert.True(pair.Inbound.ReaderParks > Rounds / 10, $"only {pair.Inbound.ReaderParks} parks in {Rounds} rounds: the race was barely run");
        if (barriersRefused)
        {
            // Every park came after a refused barrier (a re-check after one may find the message and not park).
            Assert.Equal(0, pair.Inbound.ReaderParkBarriers);
            Assert.InRange(pair.Inbound.ReaderParkBarrierFailures, pair.Inbound.ReaderParks, long.MaxValue);
        }
        else
        {
            Assert.Equal(0, pair.Inbound.ReaderParkBarrierFailures);
        }
    }

    [Fact]
    public async Task Park_TheKernelRefusesTheBarrier_EachSuchParkLastsAMillisecondAtMost_ThenTheBarrierIsBack()
    {
        // A machine that offered the barrier at start never refuses it: the path only a test reaches.
        const int Refused = 5;
        using var pair = new ChannelPair(Options());
        pair.Inbound.RefuseReaderParkBarriersForTest(Refused);
        Task<bool> waiting = Task.Run(() => WaitParked(pair));
        var refusing = Stopwatch.StartNew();
        while ((pair.Inbound.ReaderParkBarrierFailures < Refused || pair.Inbound.ReaderParkBarriers == 0) && refusing.Elapsed < TestTimeouts.Long)
        {
            Thread.Sleep(1);
        }
        // Each refused park is cut to a millisecond (the park timeout is 10 s): five of them in under 9 s even on a slow
        // machine, and the next park issues the barrier again.
        Assert.Equal(Refused, pair.Inbound.ReaderParkBarrierFailures);
        Assert.True(refusing.Elapsed < TimeSpan.FromSeconds(9), $"{Refused} refused parks took {refusing.Elapsed}");
        Assert.True(pair.Inbound.ReaderParkBarriers >= 1, "no park issued the barrier after the refusals");
        Assert.Equal(pair.Inbound.ReaderParks, pair.Inbound.ReaderParkBarriers + pair.Inbound.ReaderParkBarrierFailures);
        Assert.False(waiting.IsCompleted, "the wait ended without a message");

        // The barrier is back, so the fence-free publish wakes the parked reader.
        var woken = Stopwatch.StartNew();
        Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, 7, TransactionFlags.Oneway, [1, 2, 3]));
        Assert.True(await waiting.WaitAsync(TestTimeouts.Long), "the publish did not wake the parked reader");
        Assert.True(woken.Elapsed < TimeSpan.FromSeconds(9), $"woken after {woken.Elapsed}");
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord record));
        Assert.Equal(7u, record.Code);
    }
    /// <summary>
    /// The free ring's race: the receiver frees without a fence at the moment the writer, out of room, parks for it (the
    /// async senders' room wait; with no spin it parks at once, with the barrier when the writer promised it). Each round the ring
    /// is full, the writer waits, the receiver takes and frees one after a random short pause: before the writer parks,
    /// while it parks, or after. A lost wake would cost one round the whole 10 s park timeout.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RoomWaitAndFree_Racing_NoWakeIsLost(bool useBarrier)
    {
        const int Rounds = 3_000;
        const int Ring = 4;
        using var pair = new ChannelPair(Options(useBarrier, rings: Ring, spin: TimeSpan.Zero));
        Assert.Equal(useBarrier, pair.Inbound.PublishFreesWithoutFence());
        Assert.Equal(useBarrier, pair.Outbound.RoomWaitsParkWithBarrier);
        uint sent = 0;
        while (pair.Outbound.TrySend(TransactionIds.AssignedOnSend, sent, TransactionFlags.Oneway, s_recordPayload))
        {
            sent++;
        }
        Assert.Equal((uint)Ring, sent);

        long asked = 0;
        Task reader = Task.Run(() =>
        {
            var random = new Random(54321);
            for (int i = 0; i < Rounds; i++)
            {
                var waited = Stopwatch.StartNew();
                while (Volatile.Read(ref asked) <= i)
                {
                    Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"round {i}: the writer never asked");
                    Thread.SpinWait(8);
                }
                // 0-50 µs: the free lands before the writer parks, while it parks, or after.
                long pauseEnd = Stopwatch.GetTimestamp() + (random.Next(0, 50) * Stopwatch.Frequency / 1_000_000);
                while (Stopwatch.GetTimestamp() < pauseEnd)
                {
                    Thread.SpinWait(1);
                }
                Assert.True(pair.Inbound.TryReceive(out TransactionRecord record), $"round {i}: the full ring had no record");
                Assert.Equal((uint)i, record.Code);
                pair.Inbound.Free(record);
            }
        });
        var worst = TimeSpan.Zero;
        for (int i = 0; i < Rounds && !reader.IsCompleted; i++)
        {
            Assert.False(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, sent, TransactionFlags.Oneway, s_recordPayload), "the ring was not full");
            long freedBefore = pair.Outbound.BuffersFreed;
            Volatile.Write(ref asked, i + 1);
            var waited = Stopwatch.StartNew();
            pair.Outbound.WaitForFrees(freedBefore, TimeSpan.FromSeconds(40));
            worst = waited.Elapsed > worst ? waited.Elapsed : worst;
            if (reader.IsCompleted)
            {
                // The reader failed (or ended early): its own error says why.
                await reader;
            }
            Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, sent, TransactionFlags.Oneway, s_recordPayload), $"round {i}: no room after the wait");
            sent++;
        }
        await reader.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a wait for room took {worst}: a lost wake (the park timeout is 10 s; a loaded machine has delayed one by 3 s)");
        Assert.True(pair.Outbound.RoomWaitParks > Rounds / 10, $"only {pair.Outbound.RoomWaitParks} parks in {Rounds} rounds: the race was barely run");
        // One barrier before each park's re-check (which may find the free and not park at all); none without the promise.
        if (useBarrier)
        {
            Assert.InRange(pair.Outbound.RoomWaitParkBarriers, pair.Outbound.RoomWaitParks, long.MaxValue);
        }
        else
        {
            Assert.Equal(0, pair.Outbound.RoomWaitParkBarriers);
        }
    }

    /// <summary>
    /// A writer that announces the barrier (so the receiver frees without a fence) and parks without it when it waits for
    /// room: only its own waits are at risk (its park timeout, short here, ends each); the receiver's frees all reach it,
    /// in order, and the receiver's ring, region and memory are as with an honest writer.
    /// </summary>
    [Fact]
    [Trait("Category", "Hostile")]
    public async Task Writer_AnnouncesTheBarrierAndParksWithoutIt_OnlyItsOwnRoomWaitsAreAtRisk()
    {
        const int Rounds = 300;
        const int Ring = 4;
        using InboundChannel victim = InboundChannel.Create("park-barrier-room-liar", Options(rings: Ring));
        // The liar's word, as a connection takes it from the liar's region header.
        Assert.True(victim.PublishFreesWithoutFence());
        using OutboundChannel liar = WriterFor(victim, Options(useBarrier: false, rings: Ring, parkTimeout: TimeSpan.FromMilliseconds(50), spin: TimeSpan.Zero));
        Assert.False(liar.RoomWaitsParkWithBarrier);
        long residentBefore = victim.Region.ResidentBytes;

        uint sent = 0;
        Task reader = Task.Run(() =>
        {
            for (int i = 0; i < Rounds + Ring; i++)
            {
                TransactionRecord record;
                var waited = Stopwatch.StartNew();
                while (!victim.TryReceive(out record))
                {
                    Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), $"message {i} never came");
                    Thread.SpinWait(64);
                }
                Assert.Equal((uint)i, record.Code);
                Thread.SpinWait(i % 64 * 20);
                victim.Free(record);
            }
        });
        for (int i = 0; i < Rounds + Ring; i++)
        {
            while (!liar.TrySend(TransactionIds.AssignedOnSend, sent, TransactionFlags.Oneway, s_recordPayload))
            {
                var waited = Stopwatch.StartNew();
                liar.WaitForFrees(liar.BuffersFreed, TimeSpan.FromSeconds(30));
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(20), $"the liar's wait took {waited.Elapsed}: more than its park timeout");
            }
            sent++;
        }
        await reader.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.True(liar.RoomWaitParks > 0, "the liar never parked: its waits were not run");
        Assert.Equal((ulong)(Rounds + Ring), victim.Freed);
        liar.DrainFrees();
        Assert.Equal(0, liar.IgnoredFrees);
        Assert.Equal(0, liar.LiveBuffers);
        // The victim's region backs no more than the bytes this traffic wrote into it (and the page of a buffer's end).
        Assert.InRange(victim.Region.ResidentBytes, 0, residentBefore + ((Rounds + Ring) * (long)s_recordPayload.Length) + SharedRegion.PageSize);
    }
}
