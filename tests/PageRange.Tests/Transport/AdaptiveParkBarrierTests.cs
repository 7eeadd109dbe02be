using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The adaptive park barrier (<see cref="AdaptiveBarrier"/>, <see cref="Doorbell"/>'s remarks): a spin-then-park or park
/// receiver issues the barrier before its parks only while it takes many records between them (a stream), says so in
/// its region's mode word, and its writer skips the publish's fence only while that word says "on". Real memfds and
/// mappings; a lost wake shows as a wait as long as the (long) park timeout.
/// </summary>
public sealed class AdaptiveParkBarrierTests
{
    // Spin-then-park with a short spin unless said, over ParkBarrierTests' options (a 10 s park timeout).
    private static ChannelOptions Options(
        bool useBarrier = true, int rings = 64, WaitStrategy strategy = WaitStrategy.SpinThenPark, TimeSpan? spin = null, TimeSpan? park = null) =>
        ParkBarrierTests.Options(useBarrier, rings, strategy, park, spin ?? TimeSpan.FromMicroseconds(20));

    private static OutboundChannel WriterFor(InboundChannel receiver, ChannelOptions options) => ParkBarrierTests.WriterFor(receiver, options);

    private static int ModeWord(ChannelPair pair) => pair.ReadHeader<int>(RegionHeaderLayout.TxBarrierModeOffset);

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public void Region_OfAReceiverThatParks_AnnouncesTheAdaptiveBarrier_On_AndItsWriterFollowsTheWord(WaitStrategy strategy)
    {
        using var pair = new ChannelPair(Options(strategy: strategy));
        Assert.Equal(RegionHeaderLayout.AdaptiveParkBarrierFlag, pair.ReadHeader<uint>(12));
        Assert.True(pair.Inbound.ReadersParkWithAdaptiveBarrier);
        Assert.False(pair.Inbound.ReadersParkWithBarrier);
        // It starts on: a receiver that never parks costs nothing with it.
        Assert.True(pair.Inbound.ReadersAdaptiveBarrierOn);
        Assert.Equal(1, ModeWord(pair));
        Assert.True(pair.Outbound.RingsWithoutFenceWhileAnnounced);
        Assert.False(pair.Outbound.RingsWithoutFence);
    }

    /// <summary>Busy-spin promises the barrier at every park instead (<see cref="ParkBarrierTests"/>).</summary>
    [Fact]
    public void Region_OfABusySpinningReceiver_DoesNotAnnounceIt_NorDoesAWriterFollowAnyWord()
    {
        using var pair = new ChannelPair(Options(strategy: WaitStrategy.BusySpin));
        Assert.Equal(0u, pair.ReadHeader<uint>(12) & RegionHeaderLayout.AdaptiveParkBarrierFlag);
        Assert.False(pair.Inbound.ReadersParkWithAdaptiveBarrier);
        Assert.False(pair.Outbound.RingsWithoutFenceWhileAnnounced);
        Assert.Equal(0, ModeWord(pair));
    }

    [Fact]
    public void Receiver_WithTheBarrierOff_AnnouncesNothing_AndAWriterWithItOff_FollowsNothing()
    {
        using (var off = new ChannelPair(Options(useBarrier: false)))
        {
            Assert.Equal(0u, off.ReadHeader<uint>(12));
            Assert.False(off.Inbound.ReadersParkWithAdaptiveBarrier);
            Assert.False(off.Outbound.RingsWithoutFenceWhileAnnounced);
        }
        using var pair = new ChannelPair(Options());
        using OutboundChannel writer = WriterFor(pair.Inbound, Options(useBarrier: false));
        Assert.False(writer.RingsWithoutFenceWhileAnnounced);
        Assert.False(writer.RingsWithoutFence);
    }

    /// <summary>
    /// The choice, with the real thresholds: parks with no record taken between them (calls through the direct lines,
    /// a trickle) keep the barrier for <see cref="AdaptiveBarrier.OffAfterParks"/> - 1 of them, then the next turns it off
    /// with one barrier and goes without it; after a stretch of records taken, the next park turns it on and issues it.
    /// </summary>
    [Fact]
    public void Barrier_OffAfterQuietParks_OnAfterAStretchOfRecords()
    {
        using var pair = new ChannelPair(Options());
        Assert.True(pair.Inbound.ReadersAdaptiveBarrierOn);

        // Parks with nothing taken between them (the park strategy: a spin-then-park wait with nothing coming would spin
        // to its 5 ms deadline and never park).
        for (int park = 1; park < AdaptiveBarrier.OffAfterParks; park++)
        {
            Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), WaitStrategy.Park, CancellationToken.None));
            Assert.True(pair.Inbound.ReadersAdaptiveBarrierOn);
            Assert.Equal(park, pair.Inbound.ReaderParkBarriers);
        }
        Assert.Equal(0, pair.Inbound.ReaderBarrierSwitches);
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), WaitStrategy.Park, CancellationToken.None));
        Assert.False(pair.Inbound.ReadersAdaptiveBarrierOn);
        Assert.Equal(0, ModeWord(pair));
        Assert.Equal(1, pair.Inbound.ReaderBarrierSwitches);
        // The switch's own barrier, none for the park itself.
        Assert.Equal(AdaptiveBarrier.OffAfterParks, pair.Inbound.ReaderParkBarriers);
        Assert.Equal(AdaptiveBarrier.OffAfterParks, pair.Inbound.ReaderParks);

        // A stretch of records taken without a park (messages too large for a pack: a record each), as a stream's reader
        // that is behind takes them.
        byte[] payload = new byte[PackLayout.MaxPayload + 8];
        for (int i = 0; i < AdaptiveBarrier.OnAfter; i++)
        {
            Assert.True(pair.Outbound.TrySend(TransactionIds.AssignedOnSend, (uint)i, TransactionFlags.Oneway, payload));
            Assert.True(pair.Inbound.TryReceive(out TransactionRecord record));
            Assert.Equal((uint)i, record.Code);
            pair.Inbound.Free(record);
        }
        Assert.Equal(AdaptiveBarrier.OffAfterParks, pair.Inbound.ReaderParks);
        Assert.False(pair.Inbound.ReadersAdaptiveBarrierOn);

        // The next park follows that stretch: on, and it issues the barrier.
        Assert.False(pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), WaitStrategy.Park, CancellationToken.None));
        Assert.True(pair.Inbound.ReadersAdaptiveBarrierOn);
        Assert.Equal(1, ModeWord(pair));
        Assert.Equal(2, pair.Inbound.ReaderBarrierSwitches);
        Assert.Equal(AdaptiveBarrier.OffAfterParks + 1, pair.Inbound.ReaderParks);
        Assert.Equal(AdaptiveBarrier.OffAfterParks + 1, pair.Inbound.ReaderParkBarriers);
    }

    /// <summary>
    /// The race the switches must not open: a writer publishing after a random short pause, without a fence whenever the
    /// mode word says "on", while the reader's barrier switches at every park attempt (test thresholds: on after no
    /// record, off after any number), and the reader's waits end now in the spin, now in a park. A lost wake would cost one
    /// round the whole 10 s park timeout.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SwitchesParksAndPublishes_Racing_NoWakeIsLost(bool barriersRefused)
    {
        const int Rounds = 20_000;
        using var pair = new ChannelPair(Options(rings: 256, spin: TimeSpan.FromMicroseconds(15)));
        pair.Inbound.SetReaderBarrierThresholdsForTest(onAfter: 0, offBelow: int.MaxValue);
        Assert.True(pair.Outbound.RingsWithoutFenceWhileAnnounced);
        if (barriersRefused)
        {
            // Every barrier refused, a switch off never completes: each park is then a short one (1 ms at most).
            pair.Inbound.RefuseReaderParkBarriersForTest(int.MaxValue);
        }
        // 0-40 µs: the publish lands before the reader waits, while it spins, while it switches or parks, or after.
        // Every third round's waits park at once, the others spin first: both kinds of wait and park.
        TimeSpan worst = await WakeRace.RunAsync(
            pair, Rounds, maxPauseMicroseconds: 40, seed: 4242,
            wait: i => pair.Inbound.WaitForTransaction(TimeSpan.FromSeconds(60), i % 3 == 0 ? WaitStrategy.Park : WaitStrategy.SpinThenPark, CancellationToken.None));
        Assert.True(worst < TimeSpan.FromSeconds(9), $"a message waited {worst} to be taken: a lost wake (the park timeout is 10 s)");
        Assert.True(pair.Inbound.ReaderParks > Rounds / 10, $"only {pair.Inbound.ReaderParks} parks in {Rounds} rounds: the race was barely run");
        if (barriersRefused)
        {
            Assert.Equal(0, pair.Inbound.ReaderParkBarriers);
            Assert.True(pair.Inbound.ReaderParkBarrierFailures > 0);
            // Stuck turning off (the switch's barrier refused): it never announces "on" again, so the writer fences.
            Assert.Equal(0, ModeWord(pair));
        }
        else
        {
            Assert.True(pair.Inbound.ReaderBarrierSwitches > Rounds / 20, $"only {pair.Inbound.ReaderBarrierSwitches} switches in {Rounds} rounds: the race was barely run");
            Assert.Equal(0, pair.Inbound.ReaderParkBarrierFailures);
        }
    }

    /// <summary>
    /// A receiver that announces "on" in its mode word and never issues the barrier: the writer skips its fence on the
    /// liar's word, so only the liar's own wakes are at risk (its park timeout still ends every park); the writer's
    /// sends, its state and its buffers are as with an honest peer.
    /// </summary>
    [Fact]
    [Trait("Category", "Hostile")]
    public async Task Receiver_AnnouncesOnAndParksWithoutTheBarrier_OnlyItsOwnWakesAreAtRisk()
    {
        // The liar parks as a rule and issues no barrier, with a short park timeout so a lost wake costs it little.
        ChannelOptions liarOptions = Options(useBarrier: false, strategy: WaitStrategy.Park, park: TimeSpan.FromMilliseconds(20));
        using InboundChannel liar = InboundChannel.Create("adaptive-barrier-liar", liarOptions);
        liar.Region.GetSpan(12, sizeof(uint))[0] = (byte)RegionHeaderLayout.AdaptiveParkBarrierFlag;
        liar.Region.GetSpan(RegionHeaderLayout.TxBarrierModeOffset, sizeof(int))[0] = 0xff;
        using OutboundChannel writer = WriterFor(liar, Options());
        Assert.True(writer.RingsWithoutFenceWhileAnnounced);

        // The liar flips its word now and then: the writer reads it per publish, and either reading is harmless.
        await ParkBarrierTests.StreamToALiarAsync(
            liar, writer, afterSend: i => liar.Region.GetSpan(RegionHeaderLayout.TxBarrierModeOffset, sizeof(int))[0] = (byte)(i % 3 == 0 ? 0 : 1));
    }
}
