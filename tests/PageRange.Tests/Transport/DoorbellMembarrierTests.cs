using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The fence moved to the parker (issue 12): the capability each side announces in its region header, read once, and
/// the asymmetric protocol itself between two threads on two mappings, where a lost wake would show as a park that
/// ran its whole (long) timeout.
/// </summary>
public sealed class DoorbellMembarrierTests(ITestOutputHelper output) : IDisposable
{
    private const int PingSequenceOffset = 0;
    private const int PingParkedOffset = 64;
    private const int PongSequenceOffset = 128;
    private const int PongParkedOffset = 192;
    private const int PingOffset = 256;
    private const int PongOffset = 320;

    /// <summary>Long enough that a waiter woken in time was woken by the futex, not by the backstop.</summary>
    private static readonly TimeSpan s_noBackstop = TimeSpan.FromSeconds(120);

    private readonly SharedRegion _region = SharedRegion.Create("doorbell-membarrier-test", SharedRegion.PageSize);

    public void Dispose() => _region.Dispose();

    [Fact]
    public void RegionHeaderLayout_Capabilities_LiesInThePaddingOfTheReceiversParkedLine()
    {
        Assert.Equal(260, RegionHeaderLayout.CapabilitiesOffset);
        Assert.Equal(260, (int)Marshal.OffsetOf<RegionHeaderLayout>(nameof(RegionHeaderLayout.Capabilities)));
        Assert.Equal(RegionHeaderLayout.TxDoorbellParkedOffset / 64, RegionHeaderLayout.CapabilitiesOffset / 64);
        Assert.Equal(576, Unsafe.SizeOf<RegionHeaderLayout>());
        // The header an older build writes (and the one Validate compares against) announces nothing.
        Assert.Equal(0u, RegionLayout.Compute(1 << 20, 64, 64).ToHeader().Capabilities);
    }

    [Fact]
    public void Membarrier_ThisKernel_RegistersTheProcess()
    {
        // The brief's machine (kernel 6.18) has MEMBARRIER_CMD_GLOBAL_EXPEDITED; without it every connection keeps the
        // symmetric fences, which is correct but is not what the other tests here exercise.
        Assert.True(Doorbell.ProcessRegisteredForMembarrier, "membarrier(GLOBAL_EXPEDITED) is not available to this process");
        // Registered: issuing the command works (it returns once every registered thread ran a barrier).
        Interop.MembarrierGlobalExpedited();
        Assert.True(Interop.TryRegisterGlobalExpeditedMembarrier(), "registering twice is allowed");
    }

    [Theory]
    [InlineData(0u, 0u)]
    [InlineData(1u, 1u)]
    [InlineData(0xFFFF_FFFEu, 0u)]
    [InlineData(0xFFFF_FFFFu, 1u)]
    [InlineData(0x8000_0001u, 1u)]
    public void ReadCapabilities_AnyWord_KeepsTheKnownBitsAndIgnoresTheRest(uint word, uint expected)
    {
        RegionHeaderLayout header = RegionLayout.Compute(1 << 20, 64, 64).ToHeader();
        header.Capabilities = word;
        Assert.Equal((RegionCapabilities)expected, RegionLayout.ReadCapabilities(header));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(0xFFFF_FFFEu)]
    public void OutboundChannel_PeerScribblesCapabilitiesAfterOpening_KeepsWhatItReadOnce(uint scribble)
    {
        ChannelOptions options = ChannelPair.SmallOptions();
        using InboundChannel inbound = InboundChannel.Create("capabilities-test", options);
        // What the peer (here: the test) announced when the region was handed over: unknown bits beside the known one.
        WriteWord(inbound.Region, RegionHeaderLayout.CapabilitiesOffset, 0x0000_0F01u);
        SharedRegion writerView = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, writableBytes: inbound.Region.Size);
        using var outbound = new OutboundChannel(writerView, options, new Shrinker());
        Assert.Equal(RegionCapabilities.ParksWithMembarrier, outbound.PeerCapabilities);

        WriteWord(inbound.Region, RegionHeaderLayout.CapabilitiesOffset, scribble);
        Assert.Equal(RegionCapabilities.ParksWithMembarrier, outbound.PeerCapabilities);
        // Nothing switches by itself: only a connection whose both sides announced it runs the asymmetric protocol.
        Assert.False(outbound.UsesMembarrier);
    }

    [Fact]
    public void InboundChannel_Create_AnnouncesWhatItKeepsPrivately()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(), "capabilities-announce-test");
        Assert.Equal((uint)pair.Inbound.Capabilities, ReadWord(pair.Inbound.Region, RegionHeaderLayout.CapabilitiesOffset));
        Assert.Equal(pair.Inbound.Capabilities, pair.Outbound.PeerCapabilities);
        Assert.Equal(RegionCapabilities.ParksWithMembarrier, pair.Inbound.Capabilities & RegionCapabilities.ParksWithMembarrier);
    }

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark, true)]
    [InlineData(WaitStrategy.BusySpin, true)]
    [InlineData(WaitStrategy.Park, false)]
    public void InboundChannel_Create_AnnouncesTheMembarrierUnlessItParksOnEveryWait(WaitStrategy strategy, bool announced)
    {
        using InboundChannel inbound = InboundChannel.Create("capabilities-strategy-test", ChannelPair.SmallOptions(strategy: strategy));
        Assert.Equal(announced ? RegionCapabilities.ParksWithMembarrier : RegionCapabilities.None, inbound.Capabilities);
        Assert.Equal((uint)inbound.Capabilities, ReadWord(inbound.Region, RegionHeaderLayout.CapabilitiesOffset));
    }

    [Theory]
    [InlineData(0u, 0u, false)]
    [InlineData(1u, 0u, false)]
    [InlineData(0u, 1u, false)]
    [InlineData(1u, 1u, true)]
    [InlineData(1u, 0xFFFF_FFFEu, false)]
    public void BothParkWithMembarrier_EitherSideSilent_KeepsTheFences(uint own, uint peer, bool expected) =>
        Assert.Equal(expected, Doorbell.BothParkWithMembarrier((RegionCapabilities)own, (RegionCapabilities)peer));

    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task PingPong_MembarrierOnEveryBellTwoMappings_EveryParkEndsByAWake(WaitStrategy strategy)
    {
        const int rounds = 3_000;
        using SharedRegion peerView = SharedRegion.Open(Interop.Dup(_region.Handle), _region.Size, writableBytes: _region.Size);
        Doorbell pingBellA = Doorbell.Over(_region, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellA = Doorbell.Over(_region, PongSequenceOffset, PongParkedOffset);
        Doorbell pingBellB = Doorbell.Over(peerView, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellB = Doorbell.Over(peerView, PongSequenceOffset, PongParkedOffset);
        foreach (Doorbell bell in new[] { pingBellA, pongBellA, pingBellB, pongBellB })
        {
            bell.UseMembarrier();
            Assert.True(bell.UsesMembarrier);
        }
        // Each side answers only after a delay longer than the other's spin, so (nearly) every wait parks.
        TimeSpan spin = TimeSpan.FromMicroseconds(1);
        long delay = Stopwatch.Frequency / 10_000;

        Task ponger = Task.Factory.StartNew(
            () =>
            {
                for (int i = 1; i <= rounds; i++)
                {
                    var ping = new WordEquals(peerView, PingOffset, i);
                    Assert.True(pingBellB.Wait(ref ping, strategy, spin, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Long), default));
                    SpinFor(delay);
                    WriteWord(peerView, PongOffset, (uint)i);
                    // Ring skips its fence here: only the parker's membarrier orders the store above before its load.
                    pongBellB.Ring();
                }
            },
            TaskCreationOptions.LongRunning);

        for (int i = 1; i <= rounds; i++)
        {
            SpinFor(delay);
            WriteWord(_region, PingOffset, (uint)i);
            pingBellA.Ring();
            var pong = new WordEquals(_region, PongOffset, i);
            Assert.True(pongBellA.Wait(ref pong, strategy, spin, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Long), default));
        }
        await ponger.WaitAsync(TestTimeouts.Long);

        // The waits did park (the protocol under test ran), and none of them needed the backstop.
        Assert.True(pongBellA.Parks >= rounds / 4, $"the pinger parked {pongBellA.Parks} times in {rounds} rounds");
        Assert.True(pingBellB.Parks >= rounds / 4, $"the ponger parked {pingBellB.Parks} times in {rounds} rounds");
        Assert.Equal(0, pongBellA.ParkTimeouts);
        Assert.Equal(0, pingBellB.ParkTimeouts);
    }

    /// <summary>
    /// The race the protocol exists for, provoked: the producer busy-spins for each ping and publishes its pong after a
    /// jitter of a fraction of a microsecond, so its store and its look at the parked count land while the consumer
    /// announces itself parked and re-checks. Without either side's fence (the membarrier skipped, say) the store
    /// buffer may let both miss each other, and the consumer sleeps its park timeout out: counted below. The window is
    /// a few nanoseconds wide: on the 2-core VM a copy with the membarrier removed ran 124-216 k rounds in 3 s without a
    /// hit, so this is a stress of the protocol, not its proof (that is in Doorbell's remarks).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Race_PongPublishedAsThePingerParks_NoWakeIsLost(bool membarrier)
    {
        using SharedRegion peerView = SharedRegion.Open(Interop.Dup(_region.Handle), _region.Size, writableBytes: _region.Size);
        Doorbell pingBellA = Doorbell.Over(_region, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellA = Doorbell.Over(_region, PongSequenceOffset, PongParkedOffset);
        Doorbell pingBellB = Doorbell.Over(peerView, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellB = Doorbell.Over(peerView, PongSequenceOffset, PongParkedOffset);
        if (membarrier)
        {
            foreach (Doorbell bell in new[] { pingBellA, pongBellA, pingBellB, pongBellB })
            {
                bell.UseMembarrier();
            }
        }
        // Short enough that a lost wake costs little time, long beside every honest hand-off here.
        TimeSpan parkTimeout = TimeSpan.FromMilliseconds(200);
        long budget = Stopwatch.Frequency * 3;
        int rounds = 0;
        using var stop = new CancellationTokenSource();

        Task ponger = Task.Factory.StartNew(
            () =>
            {
                var random = new Random(12);
                for (int i = 1; !stop.IsCancellationRequested; i++)
                {
                    var ping = new WordEquals(peerView, PingOffset, i);
                    if (!pingBellB.Wait(ref ping, WaitStrategy.BusySpin, TimeSpan.Zero, parkTimeout, Doorbell.DeadlineAfter(TestTimeouts.Long), stop.Token))
                    {
                        return;
                    }
                    Thread.SpinWait(random.Next(0, 8));
                    WriteWord(peerView, PongOffset, (uint)i);
                    pongBellB.Ring();
                }
            },
            TaskCreationOptions.LongRunning);

        long start = Stopwatch.GetTimestamp();
        try
        {
            while (Stopwatch.GetTimestamp() - start < budget)
            {
                rounds++;
                WriteWord(_region, PingOffset, (uint)rounds);
                pingBellA.Ring();
                var pong = new WordEquals(_region, PongOffset, rounds);
                Assert.True(pongBellA.Wait(ref pong, WaitStrategy.Park, TimeSpan.Zero, parkTimeout, Doorbell.DeadlineAfter(TestTimeouts.Long), default));
            }
        }
        finally
        {
            await stop.CancelAsync();
        }
        try
        {
            await ponger.WaitAsync(TestTimeouts.Long);
        }
        catch (OperationCanceledException)
        {
            // The ponger's busy wait for a ping that never came.
        }

        output.WriteLine($"{rounds} rounds, membarrier {membarrier}: the pinger parked {pongBellA.Parks} times, {pongBellA.ParkTimeouts} ran out");
        Assert.True(pongBellA.Parks >= 1_000, $"the pinger parked only {pongBellA.Parks} times in {rounds} rounds");
        Assert.Equal(0, pongBellA.ParkTimeouts);
    }

    [Fact]
    public async Task ParkTimeouts_WaitsEndedByTheirTimeoutAndNotByAWake_AreCounted()
    {
        Doorbell bell = Doorbell.Over(_region, PingSequenceOffset, PingParkedOffset);
        var never = new WordEquals(_region, PingOffset, 12345);
        Assert.False(bell.Wait(ref never, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(TimeSpan.FromMilliseconds(20)), default));
        Assert.True(bell.Parks >= 1);
        long timedOut = bell.ParkTimeouts;
        Assert.True(timedOut >= 1, $"{timedOut} park timeouts");

        // A wait the ring ends is not counted.
        using SharedRegion peerView = SharedRegion.Open(Interop.Dup(_region.Handle), _region.Size, writableBytes: _region.Size);
        Doorbell peerBell = Doorbell.Over(peerView, PingSequenceOffset, PingParkedOffset);
        long parks = bell.Parks;
        Task<bool> waiter = Task.Factory.StartNew(
            () =>
            {
                var ready = new WordEquals(_region, PingOffset, 1);
                return bell.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Long), default);
            },
            TaskCreationOptions.LongRunning);
        await Poll.WaitUntilAsync(() => bell.Parks > parks, "the waiter parked");
        WriteWord(peerView, PingOffset, 1);
        Assert.True(peerBell.Ring());
        Assert.True(await waiter.WaitAsync(TestTimeouts.Long));
        Assert.Equal(timedOut, bell.ParkTimeouts);
    }

    private static void SpinFor(long ticks)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < ticks)
        {
            Thread.SpinWait(20);
        }
    }

    private static uint ReadWord(SharedRegion region, int offset) =>
        Volatile.Read(ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(region.GetSpan(offset, 4))));

    private static void WriteWord(SharedRegion region, int offset, uint value) =>
        Volatile.Write(ref Unsafe.As<byte, uint>(ref MemoryMarshal.GetReference(region.GetSpan(offset, 4))), value);

    private readonly struct WordEquals(SharedRegion region, int offset, int value) : IWaitCondition
    {
        public bool IsReady => ReadWord(region, offset) == (uint)value;
    }
}
