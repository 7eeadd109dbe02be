using Microsoft.Extensions.Logging;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>How a channel's region is laid out and how its threads wait.</summary>
/// <remarks>
/// For an <see cref="InboundChannel"/> these values create the region. For an <see cref="OutboundChannel"/> the ring
/// capacities are what the peer announced, and the header it wrote must match them; <see cref="RegionSize"/> is
/// not used there (the size of the mapping is).
/// </remarks>
internal sealed class ChannelOptions
{
    /// <summary>Defaults: a 4 MiB region (binder's default), 1024-slot rings, spin 20 µs then park.</summary>
    internal static ChannelOptions Default { get; } = new();

    /// <summary>The region's size in bytes: a page multiple, at most 1 GiB. Defaults to 4 MiB.</summary>
    internal long RegionSize { get; init; } = 4L << 20;

    /// <summary>Transaction ring slots, a power of two. Defaults to 1024.</summary>
    internal int TxRingCapacity { get; init; } = 1024;

    /// <summary>Free ring slots, a power of two; also bounds live buffers. Defaults to 1024.</summary>
    internal int FreeRingCapacity { get; init; } = 1024;

    /// <summary>How threads wait for the peer. Defaults to <see cref="WaitStrategy.SpinThenPark"/>.</summary>
    internal WaitStrategy WaitStrategy { get; init; } = WaitStrategy.SpinThenPark;

    /// <summary>How long <see cref="WaitStrategy.SpinThenPark"/> spins before parking. Defaults to 20 µs.</summary>
    internal TimeSpan SpinDuration { get; init; } = TimeSpan.FromMicroseconds(20);

    /// <summary>
    /// The longest single futex wait: a backstop so a lost wake (or a dead peer) costs at most this long before the
    /// waiter looks again. Defaults to 100 ms.
    /// </summary>
    internal TimeSpan ParkTimeout { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Zero every buffer this side sends when the receiver frees it (binder's <c>TF_CLEAR_BUF</c> on every
    /// transaction): the writer ORs <see cref="TransactionFlags.ClearOnFree"/> into each send. Defaults to false.
    /// </summary>
    internal bool ClearBuffersOnFree { get; init; }

    /// <summary>
    /// Append small oneway messages (no metadata, not clear-on-free, at most <see cref="PackLayout.MaxPayload"/> bytes)
    /// to a shared pack buffer published by one record, instead of one buffer and one record each. Defaults to true;
    /// a writer-side choice (every receiver of this layout version reads packs), off in tests that look at one record
    /// per message.
    /// </summary>
    internal bool PackSmallOneways { get; init; } = true;

    /// <summary>
    /// Whether packs a stream filled rest after their free before the allocator gets them back
    /// (<see cref="PackLayout.RestingPacksFor"/>): <see langword="true"/> up to <see cref="PackLayout.MaxRestingPacks"/>,
    /// <see langword="false"/> none, <see langword="null"/> (the default) this machine's count
    /// (<see cref="PackLayout.RestingPacksOnThisMachine"/>); tests of the rest turn it on or off explicitly.
    /// </summary>
    internal bool? RestFullPacks { get; init; }

    /// <summary>
    /// Whether a busy-spinning receiver may trail a stream of small oneways by a pack (<see cref="TrailsStreams"/>).
    /// Defaults to true; off in tests that look at an open pack's entries as the writer appends them.
    /// </summary>
    internal bool TrailStreams { get; init; } = true;

    /// <summary>
    /// Whether this side's receiver trails a stream by a pack: when it kept catching up with a stream's writer (it caught
    /// up at most <see cref="InboundChannel.StreamTrailMaxCatchUps"/> times in the pack the stream just filled, and took at
    /// least <see cref="InboundChannel.StreamTrailMinMessagesPerCatchUp"/> of its messages per catch-up on average), its waits
    /// on the next pack look only at the ring's tail, which the writer stores once per pack, for the pack's seal, instead
    /// of at the pack's Committed word, which it stores for every message; a receive pass still takes whatever is
    /// committed. Busy-spin only: a receiver that parks is woken by the appends anyway.
    /// </summary>
    /// <remarks>
    /// A receiver that reads the Committed word and the entries' lines while the writer stores them takes each line from
    /// the writer's core, and the writer's next store waits for it to come back. Trailing, the writer fills most of a pack
    /// that no one reads meanwhile, as the floor's writer runs ahead of its reader. The cost: a stream that stops inside
    /// a pack has its last messages seen by a waiting receiver after <see cref="InboundChannel.StreamTrailLooks"/> polls
    /// (5-10 µs), or at the writer's idle seal if sooner. See benchmarks/README.md, "A receiver that trails a stream".
    /// </remarks>
    internal bool TrailsStreams => TrailStreams && WaitStrategy == WaitStrategy.BusySpin;

    /// <summary>
    /// Carry a small call, reply or error reply (no metadata, not clear-on-free, at most <see cref="InlineLayout.MaxPayload"/>
    /// bytes) in the transaction ring's slots after its record instead of in a buffer (see <see cref="InlineLayout"/>).
    /// A writer-side choice (every receiver of this protocol version reads them); off by default for the channel's own
    /// tests, which read payloads by their buffer's offset; a connection turns it on.
    /// </summary>
    internal bool InlineSmallPayloads { get; init; }

    /// <summary>
    /// How long a writer whose every live pack is in use (<see cref="PackLayout.MaxLivePacks"/>) waits for the receiver
    /// to free one before it sends a small oneway as a record of its own. Defaults to 5 µs: about the time a receiver
    /// that keeps up takes to finish a pack's messages. Longer in tests that must see the wait.
    /// </summary>
    internal TimeSpan PackWait { get; init; } = TimeSpan.FromMicroseconds(5);

    /// <summary>
    /// Whether this side uses the asymmetric doorbell fence where the kernel allows it (see <see cref="ParkBarrier"/>):
    /// its threads issue the barrier before they park if they busy-spin as a rule (<see cref="ParksWithBarrier"/>; its
    /// region says so), its writer publishes without a fence to a receiver whose region says so, and its receiver frees
    /// without one for a writer whose region says so. Off: the symmetric fences of <see cref="Doorbell"/>, for tests of
    /// either protocol and of a peer without the barrier.
    /// </summary>
    internal bool UseParkBarrier { get; init; } = true;

    /// <summary>
    /// Whether this side's threads issue a <see cref="ParkBarrier"/> before every park on a doorbell: its readers' on its
    /// own region's transaction ring, its writer's (waiting for room) on the peer region's free ring. Its region's header
    /// says so (<see cref="RegionHeaderLayout.ParkBarrierFlag"/>), and the peer then publishes records and frees to it
    /// without a fence.
    /// </summary>
    /// <remarks>
    /// Only for a side that busy-spins, which parks only in the rare waits that do not follow its strategy (and a writer
    /// parks only when the peer's region is full): a side that parks as a rule would pay the membarrier (an
    /// inter-processor interrupt, 2-10 µs) in every park, and with a fast peer that tripled spin-then-park's p99 round
    /// trip when this was tried for every strategy (benchmarks/README.md, "The fence moved to the parker"). Its peer keeps
    /// the fence.
    /// </remarks>
    internal bool ParksWithBarrier => UseParkBarrier && WaitStrategy == WaitStrategy.BusySpin && ParkBarrier.CanIssue;

    /// <summary>
    /// Whether this side's readers decide park by park whether to issue a <see cref="ParkBarrier"/> (spin-then-park and
    /// park: see <see cref="AdaptiveBarrier"/>), and announce it in its region (<see cref="RegionHeaderLayout.AdaptiveParkBarrierFlag"/>,
    /// <see cref="RegionHeaderLayout.TxBarrierMode"/>), so the writer publishes without a fence while they do.
    /// </summary>
    /// <remarks>
    /// Readers only: a writer waits for room rarely, and keeps its symmetric fence for frees. Park too: its every wait
    /// parks, but a stream's reader takes many records between two parks, which the choice counts.
    /// </remarks>
    internal bool ParksWithAdaptiveBarrier => UseParkBarrier && WaitStrategy != WaitStrategy.BusySpin && ParkBarrier.CanIssue;

    /// <summary>Checks every value and computes the layout.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    internal RegionLayout Validate()
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(RegionSize, SharedRegion.DefaultMaxSize, nameof(RegionSize));
        ValidateWaits();
        return RegionLayout.Compute(RegionSize, TxRingCapacity, FreeRingCapacity);
    }

    /// <summary>Checks the wait settings only.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    internal void ValidateWaits()
    {
        if (!Enum.IsDefined(WaitStrategy))
        {
            throw new ArgumentOutOfRangeException(nameof(WaitStrategy), WaitStrategy, "Unknown wait strategy.");
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(SpinDuration, TimeSpan.Zero, nameof(SpinDuration));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ParkTimeout, TimeSpan.Zero, nameof(ParkTimeout));
    }

    /// <summary>Where the outbound allocator writes its events (ignored frees, oneway-spam suspects, no space); null for none.</summary>
    internal ILogger? AllocationLogger { get; init; }
}
