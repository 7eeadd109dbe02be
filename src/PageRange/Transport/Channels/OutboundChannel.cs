// Locks: _lock (transaction ring producer, free ring consumer, live-buffer count) is also the allocator's lock (given
// to it as BufferAllocatorOptions.SharedLock), so the send path, which holds it anyway, reserves, commits, aborts and
// frees through the allocator's ...UnderLock calls without a second lock round trip. It comes before the page
// range's locks (mm lock -> range lock -> LRU lock), the allocator lock's place in the seed's order.

using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using PageRange.Allocation;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>
/// The writing side of one direction: copies payloads once into the peer's region, publishes their records on the
/// transaction ring and drains the free ring the peer hands buffers back on.
/// </summary>
/// <remarks>
/// <para>
/// The peer created the region and wrote its header; this side checks that header once (magic, version, every size
/// against what was announced) and from then on keeps the layout privately. The bookkeeping of the data area
/// (<see cref="BufferAllocator"/>, <see cref="ShrinkablePageRange"/>) lives only here, in private memory, so a peer
/// cannot corrupt it. At most <see cref="RegionLayout.MaxLiveBuffers"/> buffers are live (reserved or delivered and
/// not yet freed) at once, so the receiver's free always finds a slot on the free ring.
/// </para>
/// <para>
/// Hot path (<see cref="TrySend(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, in RecordContext)"/> with space available, pages already backed): reserve, copy, publish, wake the
/// receiver if it is parked: no system call and no heap allocation. Frees behind small messages are drained in
/// batches (see <see cref="LazyDrainBuffers"/>), and always before a send finds the region full.
/// Thread safety: every member may be called from any thread; sends are serialised by one lock.
/// </para>
/// </remarks>
internal sealed unsafe class OutboundChannel : IDisposable
{
    private static readonly int s_pid = Environment.ProcessId;

    private readonly SharedRegion _region;
    private readonly RegionLayout _layout;
    private readonly ChannelOptions _options;
    private readonly ShrinkablePageRange _pages;
    private readonly BufferAllocator _allocator;
    private readonly BufferSlabs _slabs;
    private readonly BufferSlabs _callSlabs;
    private readonly RingProducer<TransactionRecordLayout> _txRing;
    private readonly RingConsumer<FreeRecordLayout> _freeRing;
    private readonly Doorbell _txDoorbell;
    private readonly Doorbell _freeDoorbell;
    private readonly ThinLock _lock = new();
    private int _liveBuffers;
    // The inline transactions (see InlineLayout) among _liveBuffers: their frees are honoured only up to this many.
    private int _inlineLive;
    private long _inlineSent;
    // The peer's direct reply lines (DirectReplyLayout), written under the send lock.
    private readonly TransactionRecordLayout* _directReply;
    private long _directRepliesSent;
    // The peer's direct call lines (DirectCallLayout) and the last sequence written there, under the send lock.
    private readonly TransactionRecordLayout* _directCall;
    private ulong _directCallSequence;
    private readonly bool _inline;
    // The layout's live limit, computed once (it is read per send).
    private readonly int _maxLiveBuffers;
    // The slots the transaction ring may hold unconsumed after an inline publish (see TryPublishInlineUnsynchronized).
    private readonly int _maxUnconsumedForInline;
    private long _outOfRangeFrees;
    private long _slotUndeliveredFrees;
    private long _buffersFreed;
    // Calls of WakeWriter: a wait for frees that began before one ends (FreesReady).
    private int _writerWakes;
    private long _bytesSinceDrain;
    private int _sendsSinceDrain;
    // Packs a stream opened since the last drain, and how many it opens between two (LazyDrainPacks, or a test's).
    private int _packsSinceDrain;
    private int _lazyDrainPacks = LazyDrainPacks;
    private bool _eagerDrain;
    private int _disposed;
    // Oneway messages given an id under the lock (TransactionIds.AssignedOnSend): the count the next id is made of.
    private ulong _onewaySequence;

    // The open pack (see PackLayout), under the lock: its offset (-1: none), a pointer to its first byte in our
    // mapping, and the bytes of entries written. Sealed packs are live buffers like any other, known to the allocator.
    private readonly bool _packing;
    // Packing on and buffers not cleared on free: a plain small oneway may go straight into the open pack.
    private readonly bool _packingPlain;
    private long _packOffset = -1;
    private byte* _packBase;
    private uint _packCommitted;
    private int _packEntries;
    // The id whose entry is short next: the open pack's FirstId + _packEntries * _packIdStep (PackLayout.IdStep).
    private ulong _packNextId;
    private ulong _packIdStep;
    // Packs live (the open one and sealed ones not yet freed back), at most _maxLivePacks: their offsets.
    private readonly int _maxLivePacks;
    private readonly long[] _livePacks = new long[PackLayout.MaxLivePacks];
    // Per live pack: sealed because the stream filled it (see RestingPacksFor: only those rest).
    private readonly bool[] _livePackFull = new bool[PackLayout.MaxLivePacks];
    // Packs the receiver freed that stay reserved for a while (see PackLayout.RestingPacksFor), oldest first: a ring of
    // _restingCount offsets from _restingFirst, at most _maxRestingPacks. While it is full, the oldest is the next pack.
    private readonly int _maxRestingPacks;
    private readonly long[] _restingPacks = new long[PackLayout.MaxRestingPacks];
    private int _restingFirst;
    private int _restingCount;
    // Set by an idle writer's housekeeping, cleared when a pack opens: packs freed meanwhile go straight back.
    private bool _packsIdle;
    // Frees that named a resting pack (already freed once): ignored.
    private long _restingPackFreesIgnored;
    // Packs opened in a resting pack's buffer instead of a new reservation.
    private long _packsRecycled;
    private int _livePackCount;
    private long _packsOpened;
    private long _packedSent;
    // PackWait in Stopwatch ticks; set when a wait for a pack gave up, cleared when a pack comes back (see WaitForLivePackUnsynchronized).
    private readonly long _packWaitTicks;
    private bool _packWaitGaveUp;
    private long _packWaits;

    /// <summary>Live buffers from which a send reads the peer's frees first; below it, frees wait for the next batch.</summary>
    internal const int LazyDrainBuffers = 16;

    /// <summary>The largest message whose send may leave frees for the next batch; a larger one drains first.</summary>
    internal const int LazyDrainMaxMessage = 2048;

    /// <summary>Bytes reserved since the last drain from which a send drains first: bounds the freed-but-untaken memory.</summary>
    internal const long LazyDrainBytes = 64 << 10;

    /// <summary>
    /// Packs a stream opens between two reads of the peer's frees: the seal of a full pack drains at every this many, or
    /// when the pack it opens leaves no other free (see <see cref="SealPackUnsynchronized"/>).
    /// </summary>
    /// <remarks>
    /// Every drain reads the free ring's tail and the transaction ring's head, two lines the receiver writes, so each
    /// costs two cache-line transfers even when it finds one free. Drained at every seal, that was the largest step of a
    /// stream's turnover (about 260 ns of 630 on the EPYC guest); at every 4th it reads about 4 frees at once. A 64 B
    /// stream, far vCPUs: better in 24 of 38 alternated pairs against reading at every seal, a few per cent in the
    /// medians (every 8th: no better again); see benchmarks/README.md, "Frees read every 4th pack".
    /// </remarks>
    internal const int LazyDrainPacks = 4;

    /// <summary>Opens the writing side over a region the peer created and announced.</summary>
    /// <param name="peerRegion">The peer's region, mapped read-write; the channel owns it from now on (also when this throws).</param>
    /// <param name="options">The ring capacities the peer announced, and how to wait.</param>
    /// <param name="shrinker">The shrinker for the data area's pages. Defaults to <see cref="Shrinker.Shared"/>.</param>
    /// <exception cref="ProtocolViolationException">The header is not what the peer announced, or its rings are not empty.</exception>
    /// <exception cref="ArgumentException">A wait option is out of range.</exception>
    internal OutboundChannel(SharedRegion peerRegion, ChannelOptions options, Shrinker? shrinker = null)
    {
        ArgumentNullException.ThrowIfNull(peerRegion);
        try
        {
            ArgumentNullException.ThrowIfNull(options);
            options.ValidateWaits();
            peerRegion.AddRef();
        }
        catch
        {
            peerRegion.Dispose();
            throw;
        }

        try
        {
            // Copy the header once; from here on only ring words and records are read from shared memory.
            // SAFETY: a region is at least one page, larger than the header structure, and our reference keeps it mapped.
            RegionHeaderLayout header = *(RegionHeaderLayout*)peerRegion.BasePointer;
            _layout = RegionLayout.Validate(header, peerRegion.Size, options.TxRingCapacity, options.FreeRingCapacity);
            if (header.TxTail != 0 || header.TxHead != 0 || header.FreeTail != 0 || header.FreeHead != 0)
            {
                throw new ProtocolViolationException(
                    $"The peer's region is not fresh: ring indices tx {header.TxHead}..{header.TxTail}, free {header.FreeHead}..{header.FreeTail}.");
            }
            _region = peerRegion;
            _options = options;
            _txRing = RingProducer<TransactionRecordLayout>.Over(
                peerRegion, RegionHeaderLayout.TxTailOffset, RegionHeaderLayout.TxHeadOffset, _layout.TxRingOffset, _layout.TxRingCapacity, "transaction");
            _freeRing = RingConsumer<FreeRecordLayout>.Over(
                peerRegion, RegionHeaderLayout.FreeTailOffset, RegionHeaderLayout.FreeHeadOffset, _layout.FreeRingOffset, _layout.FreeRingCapacity, "free");
            // SAFETY: GetSpan checks that each direct line set lies inside the mapping (before the transaction ring: the layout was
            // validated), which our reference keeps alive until Dispose, which takes the send lock first; every write
            // through the pointer is made under that lock after a disposed check.
            fixed (byte* lines = peerRegion.GetSpan(DirectReplyLayout.Offset, DirectReplyLayout.Size))
            {
                _directReply = (TransactionRecordLayout*)lines;
            }
            fixed (byte* lines = peerRegion.GetSpan(DirectCallLayout.Offset, DirectCallLayout.Size))
            {
                _directCall = (TransactionRecordLayout*)lines;
            }
            // A receiver whose region says its readers issue the park barrier, and a process the barrier reaches: no
            // fence per publish (see ParkBarrier). The flag is read from our private copy of the header, once.
            PeerParksWithBarrier = (header.Flags & RegionHeaderLayout.ParkBarrierFlag) != 0;
            bool ringWithoutFence = options.UseParkBarrier && PeerParksWithBarrier && ParkBarrier.Registered;
            // A receiver that issues the barrier only while it says so (one that parks as a rule): no fence while its
            // mode word says it does (see Doorbell's remarks).
            bool followBarrierMode = !ringWithoutFence && options.UseParkBarrier && ParkBarrier.Registered
                && (header.Flags & RegionHeaderLayout.AdaptiveParkBarrierFlag) != 0;
            _txDoorbell = Doorbell.Over(
                peerRegion, RegionHeaderLayout.TxDoorbellSequenceOffset, RegionHeaderLayout.TxDoorbellParkedOffset, ringWithoutFence: ringWithoutFence,
                barrierModeOffset: followBarrierMode ? RegionHeaderLayout.TxBarrierModeOffset : -1, ringWithoutFenceWhileAnnounced: followBarrierMode);
            // Our waits for room park with the barrier as our readers do (our own region's header says so, for the peer's
            // frees; see ChannelOptions.ParksWithBarrier).
            _freeDoorbell = Doorbell.Over(
                peerRegion, RegionHeaderLayout.FreeDoorbellSequenceOffset, RegionHeaderLayout.FreeDoorbellParkedOffset, parkWithBarrier: options.ParksWithBarrier);
            _pages = new ShrinkablePageRange(peerRegion, _layout.DataOffset, checked((int)(_layout.DataSize / SharedRegion.PageSize)), shrinker);
            _allocator = new BufferAllocator(_pages, new BufferAllocatorOptions { Logger = options.AllocationLogger, SharedLock = _lock });
            _slabs = new BufferSlabs(_allocator);
            _callSlabs = new BufferSlabs(_allocator, oneway: false);
            _maxLiveBuffers = _layout.MaxLiveBuffers;
            _maxUnconsumedForInline = _layout.TxRingCapacity - _maxLiveBuffers;
            // A ring without two slots beyond the live limit never has room for a record and its payload: no look at
            // the shared head per small send to learn it.
            _inline = options.InlineSmallPayloads && _maxUnconsumedForInline >= 2;
            // A region too small for a few packs in its oneway quota sends every oneway in a buffer of its own.
            _maxLivePacks = options.PackSmallOneways ? PackLayout.LivePacksFor(_allocator.OnewayQuota) : 0;
            _packing = _maxLivePacks > 0;
            _maxRestingPacks = PackLayout.RestingPacksFor(
                _allocator.OnewayQuota,
                _maxLivePacks,
                options.RestFullPacks switch { true => PackLayout.MaxRestingPacks, false => 0, null => PackLayout.RestingPacksOnThisMachine });
            // A stream's packs, live and resting, each an extent with (at worst) a free range beside it, and room for the
            // rest of the traffic: grown here, not on a stream's sends once it has run long enough to rotate.
            _allocator.EnsurePoolCapacity(2 * (_maxLivePacks + _maxRestingPacks) + 64);
            _packingPlain = _packing && !options.ClearBuffersOnFree;
            _packWaitTicks = options.WaitStrategy == WaitStrategy.Park ? 0 : (long)(options.PackWait.TotalSeconds * Stopwatch.Frequency);
        }
        catch
        {
            _pages?.Dispose();
            peerRegion.ReleaseRef();
            peerRegion.Dispose();
            throw;
        }
    }

    /// <summary>The data area's allocator, for stats.</summary>
    internal BufferAllocator Allocator => _allocator;

    /// <summary>Replies and error replies written directly into the peer's lines (see <see cref="DirectReplyLayout"/>).</summary>
    internal long DirectRepliesSent => Volatile.Read(ref _directRepliesSent);

    /// <summary>
    /// The packs a stream opens between two reads of the peer's frees (<see cref="LazyDrainPacks"/>); 1 drains at every
    /// seal, for tests that need the seal of a given pack to read the frees published before it.
    /// </summary>
    internal int LazyDrainPacksForTest
    {
        get => _lazyDrainPacks;
        set => _lazyDrainPacks = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "At least one pack.");
    }

    /// <summary>Rings the peer's transaction doorbell as a publish does, for tests that write its region by hand.</summary>
    internal void RingDoorbellForTest() => _txDoorbell.Ring();

    /// <summary>Calls written directly into the peer's lines (see <see cref="DirectCallLayout"/>).</summary>
    internal long DirectCallsSent => (long)Volatile.Read(ref _directCallSequence);

    /// <summary>
    /// The allocator's stats with the open slabs left out of <see cref="BufferAllocatorStats.ReservedBuffers"/>: a slab
    /// is the channel's own arrangement, reserved for as long as it is open, not a reservation waiting for a commit.
    /// </summary>
    internal BufferAllocatorStats GetSendStats()
    {
        // The send lock (the allocator's) keeps the slab count and the allocator's count of one moment; it comes before
        // the page range's lock GetStats takes, as everywhere.
        using (_lock.EnterScope())
        {
            BufferAllocatorStats stats = _allocator.GetStats();
            return stats with { ReservedBuffers = stats.ReservedBuffers - _slabs.SlabsInUse - _callSlabs.SlabsInUse };
        }
    }

    /// <summary>The data area's pages, for stats.</summary>
    internal ShrinkablePageRange Pages => _pages;

    /// <summary>The peer's region.</summary>
    internal SharedRegion Region => _region;

    /// <summary>Where the header, rings and data area lie.</summary>
    internal RegionLayout Layout => _layout;

    /// <summary>Buffers reserved or delivered and not yet freed (at most <see cref="RegionLayout.MaxLiveBuffers"/>).</summary>
    internal int LiveBuffers => Volatile.Read(ref _liveBuffers);

    /// <summary>The inline transactions (see <see cref="InlineLayout"/>) among <see cref="LiveBuffers"/>.</summary>
    internal int InlineLive => Volatile.Read(ref _inlineLive);

    /// <summary>How many transactions this channel sent inline.</summary>
    internal long InlineSent => Volatile.Read(ref _inlineSent);

    /// <summary>Frees the peer pushed that matched no live delivered buffer (binder logs and ignores them).</summary>
    internal long IgnoredFrees => Interlocked.Read(ref _outOfRangeFrees) + Interlocked.Read(ref _slotUndeliveredFrees) + _allocator.IgnoredFrees;

    /// <summary>Of <see cref="IgnoredFrees"/>, those of buffers whose record the peer had not yet taken off the transaction ring.</summary>
    internal long UndeliveredFrees => Interlocked.Read(ref _slotUndeliveredFrees) + _allocator.UndeliveredFrees;

    /// <summary>The slabs small oneway messages share, for stats and tests; read it under no lock only in a test that sends from one thread.</summary>
    internal BufferSlabs Slabs => _slabs;

    /// <summary>The slabs small calls and replies share, for stats and tests (read as <see cref="Slabs"/>).</summary>
    internal BufferSlabs CallSlabs => _callSlabs;

    /// <summary>Whether every buffer sent through this channel is zeroed when freed (<see cref="ChannelOptions.ClearBuffersOnFree"/>).</summary>
    internal bool ClearBuffersOnFree => _options.ClearBuffersOnFree;

    /// <summary>
    /// Ring slots published so far on the transaction ring: a record each (a pack's record counts once, however many
    /// messages it carries), and the payload slots after an inline record (see <see cref="InlineLayout"/>).
    /// </summary>
    internal ulong Sent => _txRing.Tail;

    /// <summary>Whether a publish (a record's or a packed message's) makes no fence (the receiver's readers issue the park barrier; see <see cref="ParkBarrier"/>).</summary>
    internal bool RingsWithoutFence => _txDoorbell.RingsWithoutFence;

    /// <summary>Whether a publish makes no fence while the receiver's readers announce the adaptive barrier (<see cref="AdaptiveBarrier"/>).</summary>
    internal bool RingsWithoutFenceWhileAnnounced => _txDoorbell.RingsWithoutFenceWhileAnnounced;

    /// <summary>
    /// Whether the peer's region header says its threads issue the park barrier (<see cref="RegionHeaderLayout.ParkBarrierFlag"/>),
    /// read once from our private copy of it: its readers, so we publish without a fence; its writer waiting for room in
    /// our region, so our frees may go without one (<see cref="InboundChannel.PublishFreesWithoutFence"/>).
    /// </summary>
    internal bool PeerParksWithBarrier { get; }

    /// <summary>Whether our waits for room issue the park barrier before they park (<see cref="ChannelOptions.ParksWithBarrier"/>).</summary>
    internal bool RoomWaitsParkWithBarrier => _freeDoorbell.ParksWithBarrier;

    /// <summary>Parks of our waits for room so far (futex waits on the peer region's free doorbell), for tests.</summary>
    internal long RoomWaitParks => _freeDoorbell.Parks;

    /// <summary>Park barriers our waits for room issued, for tests.</summary>
    internal long RoomWaitParkBarriers => _freeDoorbell.ParkBarriers;

    /// <summary>The most packs this writer keeps live (<see cref="PackLayout.LivePacksFor"/>); 0 when it does not pack.</summary>
    internal int MaxLivePacks => _maxLivePacks;

    /// <summary>The most packs this writer keeps reserved after their free (<see cref="PackLayout.RestingPacksFor"/>).</summary>
    internal int MaxRestingPacks => _maxRestingPacks;

    /// <summary>The resting packs' offsets, oldest first, for tests.</summary>
    internal long[] RestingPackOffsetsForTest
    {
        get
        {
            using (_lock.EnterScope())
            {
                var offsets = new long[_restingCount];
                for (int i = 0; i < offsets.Length; i++)
                {
                    int at = _restingFirst + i;
                    offsets[i] = _restingPacks[at >= _maxRestingPacks ? at - _maxRestingPacks : at];
                }
                return offsets;
            }
        }
    }

    /// <summary>Frees that named a pack resting after its first free, ignored (see <see cref="DrainFrees"/>).</summary>
    internal long RestingPackFreesIgnored => Interlocked.Read(ref _restingPackFreesIgnored);

    /// <summary>Packs freed by the receiver and still reserved (a hint from any thread; exact under the send lock).</summary>
    internal int RestingPacks => Volatile.Read(ref _restingCount);

    /// <summary>Packs opened in a resting pack's buffer, reserved again where it lies (see <see cref="TryRecycleRestingPackUnsynchronized"/>).</summary>
    internal long PacksRecycled => Interlocked.Read(ref _packsRecycled);

    /// <summary>Packs opened so far (each published by one record).</summary>
    internal long PacksOpened => Interlocked.Read(ref _packsOpened);

    /// <summary>Oneway messages sent as entries of a pack so far.</summary>
    internal long PackedSent => Interlocked.Read(ref _packedSent);

    /// <summary>Waits for a live pack to come back so far (see <see cref="WaitForLivePackUnsynchronized"/>).</summary>
    internal long PackWaits => Interlocked.Read(ref _packWaits);

    /// <summary>The offset of the pack small oneways are appended to now, or -1; for tests (read under no lock: a hint).</summary>
    internal long OpenPackOffset => Volatile.Read(ref _packOffset);

    /// <summary>
    /// Copies <paramref name="payload"/> into a new buffer in the peer's region and publishes it, if there is room now.
    /// </summary>
    /// <remarks>
    /// Does not wait for room, with one exception: a small oneway that finds every live pack in use may wait up to
    /// <see cref="ChannelOptions.PackWait"/> (5 µs) for the receiver to free one (see <see cref="WaitForLivePackUnsynchronized"/>).
    /// </remarks>
    /// <param name="transactionId">The id the receiver sees; a reply carries the id of its call; <see cref="TransactionIds.AssignedOnSend"/>
    /// gives a oneway message a new id under the lock.</param>
    /// <param name="code">What the transaction asks for.</param>
    /// <param name="flags">Exactly one kind flag, plus modifiers; <see cref="TransactionFlags.Oneway"/> charges the oneway quota.</param>
    /// <param name="payload">The bytes, copied once.</param>
    /// <returns><see langword="false"/> if the region is full now (no free range fits, the oneway quota is used up,
    /// or the live-buffer limit is reached); freeing buffers on the other side makes room.</returns>
    /// <exception cref="ArgumentException">The flags are invalid.</exception>
    /// <exception cref="MessageTooLargeException">The payload can never fit (larger than the data area, or than the
    /// oneway quota for a oneway transaction).</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid ring index.</exception>
    /// <exception cref="BackingAllocationException">The kernel had no memory for a page of the buffer.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    /// <param name="context">The call chain of a two-way call, the status of an error reply; default otherwise.</param>
    internal bool TrySend(ulong transactionId, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, in RecordContext context = default) =>
        TrySend(ThreadToken.Current, transactionId, code, flags, payload, context);

    /// <inheritdoc cref="TrySend(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, in RecordContext)"/>
    /// <param name="thread">The current thread's token, read once by the caller for all its lock passes.</param>
    /// <param name="transactionId">The transaction's id.</param>
    /// <param name="code">The method or opcode.</param>
    /// <param name="flags">The transaction's flags.</param>
    /// <param name="payload">The bytes to send.</param>
    /// <param name="context">The call's chain, depth, status and metadata.</param>
    internal bool TrySend(ThreadToken thread, ulong transactionId, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, in RecordContext context)
    {
        // The internal direct-reply bit (see DirectReplyLayout): on a two-way call it asks for a direct reply (the wire
        // bit), on a reply it says where to write it if it fits; never part of the flags validated or counted.
        TransactionFlags direct = flags & TransactionFlagsExtensions.DirectReplyRequested;
        // And the direct-call bit: write a small call into the peer's direct call lines (see DirectCallLayout).
        bool directCall = (flags & TransactionFlagsExtensions.DirectCall) != 0;
        flags &= ~(TransactionFlagsExtensions.DirectReplyRequested | TransactionFlagsExtensions.DirectCall);
        ValidateFlags(flags);
        if (_options.ClearBuffersOnFree)
        {
            flags |= TransactionFlags.ClearOnFree;
        }
        bool oneway = flags.IsOneway();
        bool clearOnFree = (flags & TransactionFlags.ClearOnFree) != 0;
        bool packable = _packing && flags == TransactionFlags.Oneway && payload.Length <= PackLayout.MaxPayload && context.Metadata.IsEmpty;
        using (_lock.EnterScope(thread))
        {
            ThrowIfDisposed();
            if (packable)
            {
                // Whether the entry is short depends on the id (PackLayout.IdStep): the one it gets if it goes now. Given
                // only then, so ids still increase in the order messages are published when this one waits below.
                if (HasRoomInOpenPack(EntrySizeInOpenPack(NextIdUnsynchronized(transactionId), payload.Length)))
                {
                    // A stream's message: straight-line code, forced inline (see AppendToOpenPackUnsynchronized).
                    AppendToOpenPackUnsynchronized(IdUnsynchronized(transactionId), code, payload);
                    return true;
                }
                if (_livePackCount >= _maxLivePacks)
                {
                    WaitForLivePackUnsynchronized(payload.Length);
                }
            }
            transactionId = IdUnsynchronized(transactionId);
            if (packable && (HasRoomInOpenPack(EntrySizeInOpenPack(transactionId, payload.Length)) || _livePackCount < _maxLivePacks))
            {
                return TrySendPackedUnsynchronized(transactionId, code, payload);
            }
            // Any other record comes after every message of the open pack: seal it first, so the receiver, which
            // finishes a pack before it looks at the ring again, keeps the order.
            SealPackUnsynchronized();
            if (direct != 0 && payload.Length <= DirectReplyLayout.MaxPayload && context.Metadata.IsEmpty
                && flags is TransactionFlags.Reply or TransactionFlags.ErrorReply
                && TryPublishDirectReplyUnsynchronized(transactionId, code, flags, payload, context.Status))
            {
                return true;
            }
            // A call's record carries the request's bit on the wire; a reply's is dropped (it goes on the ring).
            TransactionFlags wire = (flags & TransactionFlags.TwoWay) != 0 ? flags | direct : flags;
            if (directCall && flags == TransactionFlags.TwoWay && payload.Length <= DirectCallLayout.MaxPayload && context.Metadata.IsEmpty
                && TryPublishDirectCallUnsynchronized(transactionId, code, wire, payload, context))
            {
                return true;
            }
            if (_inline && payload.Length <= InlineLayout.MaxPayload && context.Metadata.IsEmpty && InlineLayout.IsInlineKind(flags)
                && TryPublishInlineUnsynchronized(transactionId, code, wire, payload, context))
            {
                return true;
            }
            // The metadata block (if any) goes first in the same buffer: one reservation, one publish, one free.
            ReadOnlySpan<byte> metadata = context.Metadata.Span;
            int length = checked(metadata.Length + payload.Length);
            if (!TryReserveUnsynchronized(length, oneway, clearOnFree, out long offset))
            {
                return false;
            }
            CopyPayloadStores stores = new(metadata, payload, SpanOfReservationUnsynchronized(offset, length));
            PublishUnsynchronized(ref stores, offset, length, transactionId, code, wire, context);
            return true;
        }
    }

    /// <summary>
    /// A stream's send: a small plain oneway appended to the open pack under the send lock, with nothing else looked at;
    /// <see langword="false"/> (nothing sent) when that is not possible now (no open pack or no room in it, a payload too
    /// large for a pack, packing off or buffers cleared on free, the channel disposed), and the caller takes
    /// <see cref="TrySend(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, in RecordContext)"/>'s full path.
    /// </summary>
    /// <remarks>
    /// What <see cref="TrySend(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, in RecordContext)"/> would do for such a message, without its checks that cannot fail for it (the flags are
    /// a constant's, there is no metadata) or whose answer is fixed per channel (clear-on-free): the general path's frame
    /// and checks were a third of a 64 B oneway's send across processes once the receiver kept up (2026-12-03 18:30).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool TryAppendToOpenPack(uint code, ReadOnlySpan<byte> payload)
    {
        if (!_packingPlain || payload.Length > PackLayout.MaxPayload)
        {
            return false;
        }
        using (_lock.EnterScope())
        {
            if (Volatile.Read(ref _disposed) != 0
                || !HasRoomInOpenPack(EntrySizeInOpenPack(NextIdUnsynchronized(TransactionIds.AssignedOnSend), payload.Length)))
            {
                return false;
            }
            AppendToOpenPackUnsynchronized(TransactionIds.Oneway(++_onewaySequence), code, payload);
            return true;
        }
    }

    /// <summary>
    /// <see cref="TrySend(ulong, uint, TransactionFlags, ReadOnlySpan{byte}, in RecordContext)"/> in a loop: while the region is full, drains frees and waits on the free ring's doorbell,
    /// until the payload fits or <paramref name="timeout"/> passes.
    /// </summary>
    /// <param name="transactionId">The id the receiver sees.</param>
    /// <param name="code">What the transaction asks for.</param>
    /// <param name="flags">Exactly one kind flag, plus modifiers.</param>
    /// <param name="payload">The bytes, copied once.</param>
    /// <param name="timeout">How long to wait for room; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="RegionFullException">No room came within <paramref name="timeout"/>.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; nothing was sent.</exception>
    /// <exception cref="ArgumentException">The flags are invalid.</exception>
    /// <exception cref="MessageTooLargeException">The payload can never fit.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid ring index.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    /// <param name="context">The call chain of a two-way call, the status of an error reply; default otherwise.</param>
    internal void Send(
        ulong transactionId, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, TimeSpan timeout, CancellationToken cancellationToken,
        in RecordContext context = default)
    {
        long deadline = Doorbell.DeadlineAfter(InboundChannel.ValidateTimeout(timeout));
        while (true)
        {
            // Between passes: a peer that keeps the free ring busy makes every wait return at once, so the wait is not
            // where cancellation would be noticed. Each pass drains at most one ring of frees (DrainFreesUnsynchronized).
            cancellationToken.ThrowIfCancellationRequested();
            // Read before trying: a free drained after a failed try (by another sender) changes it, so we do not park
            // through room that appeared in between.
            long freedBefore = Volatile.Read(ref _buffersFreed);
            if (TrySend(transactionId, code, flags, payload, context))
            {
                return;
            }
            if (Stopwatch.GetTimestamp() >= deadline)
            {
                PageRangeMetrics.RecordRegionFullFailure();
                ThrowRegionFull(payload.Length, flags, timeout);
            }
            WaitForFrees(freedBefore, deadline, cancellationToken);
        }
    }

    /// <summary>Reserves a buffer of <paramref name="maxSize"/> bytes for a zero-copy send, if there is room now.</summary>
    /// <inheritdoc cref="TryReserve(int, bool, bool, out PendingBuffer)"/>
    internal bool TryReserve(int maxSize, bool oneway, out PendingBuffer buffer) => TryReserve(maxSize, oneway, clearOnFree: false, out buffer);

    /// <summary>Reserves a buffer of <paramref name="maxSize"/> bytes for a zero-copy send, if there is room now.</summary>
    /// <param name="maxSize">The most bytes the payload will have.</param>
    /// <param name="oneway">Charge the oneway quota; the committed flags must say <see cref="TransactionFlags.Oneway"/> then.</param>
    /// <param name="clearOnFree">Zero the buffer when freed; the committed flags must say <see cref="TransactionFlags.ClearOnFree"/> then.</param>
    /// <param name="buffer">The reserved buffer: write into its <see cref="PendingBuffer.Span"/>, then commit or abort it.</param>
    /// <returns><see langword="false"/> if the region is full now.</returns>
    /// <exception cref="MessageTooLargeException">The payload can never fit.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid ring index.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal bool TryReserve(int maxSize, bool oneway, bool clearOnFree, out PendingBuffer buffer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        clearOnFree |= _options.ClearBuffersOnFree;
        using (_lock.EnterScope())
        {
            ThrowIfDisposed();
            if (!TryReserveUnsynchronized(maxSize, oneway, clearOnFree, out long offset))
            {
                buffer = default;
                return false;
            }
            buffer = new PendingBuffer(this, offset, maxSize, oneway, clearOnFree);
            return true;
        }
    }

    /// <summary>
    /// <see cref="TryReserve(int, bool, bool, out PendingBuffer)"/> in a loop, as <see cref="Send"/>: while the region
    /// is full, drains frees and waits on the free ring's doorbell, until the buffer fits or <paramref name="timeout"/> passes.
    /// </summary>
    /// <param name="maxSize">The most bytes the payload will have.</param>
    /// <param name="oneway">Charge the oneway quota.</param>
    /// <param name="clearOnFree">Zero the buffer when freed.</param>
    /// <param name="timeout">How long to wait for room; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reserved buffer: write into its <see cref="PendingBuffer.Span"/>, then commit or abort it.</returns>
    /// <exception cref="RegionFullException">No room came within <paramref name="timeout"/>.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; nothing was reserved.</exception>
    /// <exception cref="MessageTooLargeException">The payload can never fit.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid ring index.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal PendingBuffer Reserve(int maxSize, bool oneway, bool clearOnFree, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long deadline = Doorbell.DeadlineAfter(InboundChannel.ValidateTimeout(timeout));
        while (true)
        {
            // Between passes, as in Send.
            cancellationToken.ThrowIfCancellationRequested();
            // Read before trying, as in Send.
            long freedBefore = Volatile.Read(ref _buffersFreed);
            if (TryReserve(maxSize, oneway, clearOnFree, out PendingBuffer buffer))
            {
                return buffer;
            }
            if (Stopwatch.GetTimestamp() >= deadline)
            {
                ThrowRegionFull(maxSize, oneway ? TransactionFlags.Oneway : TransactionFlags.TwoWay, timeout);
            }
            WaitForFrees(freedBefore, deadline, cancellationToken);
        }
    }

    /// <summary>Publishes a reserved buffer whose first <paramref name="actualSize"/> bytes hold the payload.</summary>
    /// <param name="buffer">The buffer from <see cref="TryReserve(int, bool, bool, out PendingBuffer)"/>; completed on return.</param>
    /// <param name="actualSize">The payload's length, at most <see cref="PendingBuffer.MaxSize"/>.</param>
    /// <param name="transactionId">The id the receiver sees.</param>
    /// <param name="code">What the transaction asks for.</param>
    /// <param name="flags">Exactly one kind flag, plus modifiers; Oneway and ClearOnFree as reserved.</param>
    /// <exception cref="ArgumentException">The buffer is not pending on this channel, the size is out of range, or the flags disagree with the reservation.</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid ring index.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    /// <param name="context">The call chain of a two-way call; default otherwise.</param>
    internal void Commit(ref PendingBuffer buffer, int actualSize, ulong transactionId, uint code, TransactionFlags flags, in RecordContext context = default)
    {
        CheckPending(buffer);
        ArgumentOutOfRangeException.ThrowIfNegative(actualSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(actualSize, buffer.MaxSize);
        ValidateFlags(flags);
        if (_options.ClearBuffersOnFree)
        {
            flags |= TransactionFlags.ClearOnFree;
        }
        if (flags.IsOneway() != buffer.Oneway || ((flags & TransactionFlags.ClearOnFree) != 0) != buffer.ClearOnFree)
        {
            throw new ArgumentException(
                $"The flags ({flags}) disagree with the reservation (oneway {buffer.Oneway}, clear on free {buffer.ClearOnFree}).", nameof(flags));
        }
        using (_lock.EnterScope())
        {
            ThrowIfDisposed();
            // As in TrySend: a record after the open pack's messages seals it first.
            SealPackUnsynchronized();
            InPlaceStores<TransactionRecordLayout> stores = default;
            PublishUnsynchronized(ref stores, buffer.Offset, actualSize, IdUnsynchronized(transactionId), code, flags, context);
            buffer.Complete();
        }
    }

    /// <summary>Gives back a reserved buffer without sending it.</summary>
    /// <exception cref="ArgumentException">The buffer is not pending on this channel.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal void Abort(ref PendingBuffer buffer)
    {
        CheckPending(buffer);
        using (_lock.EnterScope())
        {
            ThrowIfDisposed();
            AbortUnsynchronized(buffer.Offset);
            buffer.Complete();
        }
    }

    /// <summary>Reads the frees the peer published and gives the buffers back to the allocator: at most one ring's worth.</summary>
    /// <returns>How many free records were read (ignored ones included), at most the free ring's capacity.</returns>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid free ring tail.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal int DrainFrees()
    {
        using (_lock.EnterScope())
        {
            ThrowIfDisposed();
            return DrainFreesUnsynchronized();
        }
    }

    /// <summary>The send lock (shared with the allocator), for tests of its bias.</summary>
    internal ThinLock SendLock => _lock;

    /// <summary>
    /// <see cref="DrainFrees"/>, then gives the slab being filled back to the allocator if no slot of it is live, so
    /// its pages become Available and the shrinker can reclaim them: for the connection's housekeeping of an idle
    /// writer. A stream's sends never give that slab back themselves (the next small message would open another).
    /// </summary>
    /// <returns>How many free records were read.</returns>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid free ring tail or a forged free.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal int DrainFreesAndReleaseIdleSlab()
    {
        using (_lock.EnterScope())
        {
            ThrowIfDisposed();
            // An idle stream's pack is sealed, so the receiver, once it has taken its messages, frees it and its pages
            // can become Available. The next small oneway opens another.
            SealPackUnsynchronized();
            int drained = DrainFreesUnsynchronized();
            // An idle stream needs no rotation: its resting packs' pages become Available too, and so do those of the
            // packs the receiver frees from now on (the one just sealed, say) until a pack opens again.
            ReleaseRestingPacksUnsynchronized();
            _packsIdle = true;
            _slabs.ReleaseIdle();
            _callSlabs.ReleaseIdle();
            return drained;
        }
    }

    /// <summary>The largest payload a two-way transaction or reply can ever have: the data area.</summary>
    internal long MaxMessageSize => _allocator.DataSize;

    /// <summary>The largest payload a oneway transaction can ever have: the oneway quota.</summary>
    internal long MaxOnewayMessageSize => _allocator.OnewayQuota;

    /// <summary>Buffers given back by the peer so far (drained frees that matched a live buffer).</summary>
    internal long BuffersFreed => Volatile.Read(ref _buffersFreed);

    /// <summary>
    /// Waits until the peer publishes a free, another sender drains one (so <see cref="BuffersFreed"/> differs from
    /// <paramref name="freedBefore"/>), the channel is disposed, or <paramref name="timeout"/> passes: for the one thread
    /// that completes asynchronous senders waiting for room. It never busy-spins: it parks at once, or, on a side that
    /// busy-spins, spins then parks (<see cref="WaitStrategy.SpinThenPark"/>).
    /// </summary>
    /// <remarks>
    /// A busy-spinning side's parks here issue the park barrier (<see cref="ChannelOptions.ParksWithBarrier"/>): an
    /// inter-processor interrupt, which lands on the peer's receiving core too. Spinning first spares it while the
    /// receiver frees as fast as an async stream fills the region; once it is slower, the learned spin parks at once,
    /// where the barrier is a small part of a wait for a slow peer. The spin is at most a sixteenth of the park timeout:
    /// the budget learns to park at once only from waits longer than 8 spins, and the caller's waits end at the park
    /// timeout, so a spin as long as that (the options allow it) would spin through every wait of a stalled peer.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal void WaitForFrees(long freedBefore, TimeSpan timeout)
    {
        ThrowIfDisposed();
        FreesReady condition = new(this, freedBefore);
        WaitStrategy strategy = _options.WaitStrategy == WaitStrategy.BusySpin ? WaitStrategy.SpinThenPark : WaitStrategy.Park;
        TimeSpan spin = TimeSpan.FromTicks(Math.Min(_options.SpinDuration.Ticks, _options.ParkTimeout.Ticks / 16));
        _freeDoorbell.Wait(ref condition, strategy, spin, _options.ParkTimeout, Doorbell.DeadlineAfter(timeout), CancellationToken.None);
    }

    /// <summary>
    /// Ends the waits of senders waiting for frees, e.g. when the peer died or the connection closes, so they re-check:
    /// a wait that began before this call returns even though no free came (before, a woken waiter found no free and
    /// parked again until its park timeout, which held up the connection's dispose waiting for its room watcher).
    /// </summary>
    internal void WakeWriter()
    {
        // Before the futex wake: a waiter woken by it, or one about to park (its parked increment and our increment
        // are both locked instructions), sees the count moved.
        Interlocked.Increment(ref _writerWakes);
        _freeDoorbell.WakeAllIfOpen();
    }

    /// <summary>The allocator's binder-style dump plus ring positions, for the connection's state dump.</summary>
    internal string DumpState()
    {
        using (_lock.EnterScope())
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                return "  (closed)\n";
            }
            // SAFETY: not disposed, and Dispose takes the lock we hold before unmapping, so the header is mapped; a torn
            // read of a word the peer is writing only shows a stale value in the dump.
            RegionHeaderLayout shared = *(RegionHeaderLayout*)_region.BasePointer;
            return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"  region {_region.Size} bytes, data area {_layout.DataSize} bytes at {_layout.DataOffset}\n" +
                $"  ring slots published: {Sent}, live buffers: {LiveBuffers} (limit {_layout.MaxLiveBuffers}), ignored frees: {IgnoredFrees} ({UndeliveredFrees} of buffers still on the ring)\n" +
                $"  payloads inline: {_inlineSent} sent, {_inlineLive} of the live ones ({(_inline ? $"on, while at most {_maxUnconsumedForInline} ring slots wait" : "off")})\n" +
                $"  direct lines: {_directRepliesSent} replies, {_directCallSequence} calls written\n" +
                $"  ring positions: tx tail {_txRing.Tail} (ours) head {shared.TxHead} (peer's) of {_layout.TxRingCapacity}, " +
                $"free head {_freeRing.Head} (ours) tail {shared.FreeTail} (peer's) of {_layout.FreeRingCapacity}, " +
                $"parked readers {shared.TxDoorbellParked}, parked writers {shared.FreeDoorbellParked}\n" +
                $"  fences: publishes {(RingsWithoutFence ? "without a fence (the peer's readers park with the barrier)" : RingsWithoutFenceWhileAnnounced ? "without a fence while the peer's readers say they park with the barrier" : "with a fence")}; " +
                $"waits for room park {(RoomWaitsParkWithBarrier ? "with" : "without")} the park barrier: {RoomWaitParks} parks, {RoomWaitParkBarriers} barriers, {_freeDoorbell.ParkBarrierFailures} refused\n" +
                $"  slabs of small oneways: {_slabs.SlabsInUse} in use, {_slabs.SlabsOpened} opened, {_slabs.SlabsReleased} given back\n" +
                $"  packs of small oneways: {_packsOpened} opened, {_packedSent} messages packed, {_packWaits} waits for a live pack, {_restingCount} resting of {_maxRestingPacks} ({_packsRecycled} recycled, {_restingPackFreesIgnored} second frees ignored), open pack at {_packOffset} with {_packCommitted} bytes\n" +
                $"  slabs of small calls and replies: {_callSlabs.SlabsInUse} in use, {_callSlabs.SlabsOpened} opened, {_callSlabs.SlabsReleased} given back\n{_allocator.DumpState()}");
        }
    }

    /// <summary>
    /// Wakes parked senders (they see the dispose), zeroes live clear-on-free buffers, gives back every page this side
    /// backed in the peer's region, then unmaps it once no send is running.
    /// </summary>
    /// <remarks>
    /// The pages are punched out rather than left to the last mapping: the peer may keep the descriptor (and its
    /// mapping) as long as it likes, and the memory was charged to us. A peer still reading a buffer we sent reads
    /// zeros from then on; the connection is over, and payload bytes were never the receiver's to trust (the writer
    /// may change them at any time). Never blocks on the peer: a send holding the lock finishes its bounded pass.
    /// </remarks>
    public void Dispose() => Dispose(keepLiveBuffers: false);

    /// <summary>Closes the writing side; with <paramref name="keepLiveBuffers"/> the pages of buffers still live stay backed.</summary>
    /// <param name="keepLiveBuffers">A graceful close: the peer may still read what we published (see <see cref="ShrinkablePageRange.Dispose(bool)"/>).</param>
    internal void Dispose(bool keepLiveBuffers)
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _freeDoorbell.WakeAll();
        _lock.Enter();
        try
        {
            // Binder clears a TF_CLEAR_BUF buffer when it is freed; one that is still live when the connection ends
            // is cleared now, before the punch below (which zeroes it too, unless the kernel refuses).
            _allocator.ClearLiveBuffers();
        }
        catch (PageRangeException)
        {
            // Dispose does not throw; the punch below still zeroes what it can.
        }
        finally
        {
            _lock.Exit();
        }
        _pages.Dispose(keepLiveBuffers);
        _region.ReleaseRef();
        _region.Dispose();
    }

    /// <summary>
    /// Appends a small oneway message to the open pack, or seals it and opens a new one with this message first.
    /// </summary>
    /// <returns><see langword="false"/> if a new pack was needed and the region has no room for it now.</returns>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool TrySendPackedUnsynchronized(ulong transactionId, uint code, ReadOnlySpan<byte> payload)
    {
        if (HasRoomInOpenPack(EntrySizeInOpenPack(transactionId, payload.Length)))
        {
            AppendToOpenPackUnsynchronized(transactionId, code, payload);
            return true;
        }
        long offset;
        // Sealed because a stream filled it (not by a record of another kind, or an idle writer): it may rest once freed.
        MarkOpenPackFullUnsynchronized();
        // The next pack is reserved and written before the full one is sealed, so the seal can name it (NextPack): a
        // receiver that sees the seal fetches the new pack's first lines at once, and they are written by then (our
        // stores become visible in order). The reservation's drain (a recycled pack makes none) and the seal's (at every
        // LazyDrainPacks-th pack) run with the full pack still open, so a free naming it is caught as forged there.
        bool reserved;
        try
        {
            reserved = TryRecycleRestingPackUnsynchronized(out offset)
                || TryReserveUnsynchronized(PackLayout.Capacity, oneway: true, clearOnFree: false, out offset, allowSlab: false);
        }
        catch
        {
            // Pages that could not be backed: the full pack is sealed all the same, as it was before the reservation
            // moved ahead of the seal, so the receiver can finish it and free it. A violation the drain found ends the
            // connection anyway (the seal's own drain may report it again).
            SealPackUnsynchronized();
            throw;
        }
        if (!reserved)
        {
            SealPackUnsynchronized();
            return false;
        }
        Span<byte> pack = _pages.GetSpan(offset, PackLayout.Capacity);
        byte* packBase;
        // SAFETY: the span is our mapping of the peer's region (not the heap, so nothing moves it): the whole pack, Used
        // while the buffer is live. The pointer is used only while the pack is open (see the note above).
        fixed (byte* first = pack)
        {
            packBase = first;
        }
        // The header line: Committed, FirstId and the rest zero (a reused buffer holds old bytes). Plain stores: the
        // record's release store of the tail publishes them with the first entry, which is short (its id is FirstId).
        pack[..PackLayout.HeaderSize].Clear();
        int entrySize = PackLayout.EntrySize(payload.Length);
        *(ulong*)(packBase + PackLayout.FirstIdOffset) = transactionId;
        WriteEntry(packBase + PackLayout.HeaderSize, transactionId, code, payload, longForm: false);
        *(uint*)packBase = (uint)entrySize;
        try
        {
            SealPackUnsynchronized(nextPack: offset);
        }
        catch
        {
            // A violation the seal's drain found: the new pack was never published; give its reservation back.
            AbortUnsynchronized(offset);
            throw;
        }
        InPlaceStores<TransactionRecordLayout> stores = default;
        PublishUnsynchronized(
            ref stores, offset, PackLayout.Capacity, 0, 0, (TransactionFlags)((uint)TransactionFlags.Oneway | PackLayout.RecordFlag), default, countSent: false);
        _packOffset = offset;
        _packBase = packBase;
        _packCommitted = (uint)entrySize;
        _packEntries = 1;
        _packIdStep = PackLayout.IdStep(transactionId);
        _packNextId = unchecked(transactionId + _packIdStep);
        ClaimPackLines(packBase, entrySize);
        _livePackFull[_livePackCount] = false;
        _livePacks[_livePackCount++] = offset;
        _packsIdle = false;
        _packsOpened++;
        _packedSent++;
        TransportMetrics.OnSent(TransactionFlags.Oneway, payload.Length);
        return true;
    }

    /// <summary>
    /// Claims the lines of a pack just opened and published that its first entry (<paramref name="used"/> bytes after the
    /// header) does not reach: one plain store of zero at the start of each, past Committed, where the receiver reads
    /// nothing (a reused buffer holds old bytes there anyway).
    /// </summary>
    /// <remarks>
    /// The pack's buffer was a pack a few dozen packs ago, so the receiver's cache still holds its lines. Written entry by
    /// entry, each new line cost the writer a wait for the other core to give it up, one after another, between the
    /// messages' stores: with the vCPUs far apart, the 64 B stream ran at 19-23 M messages/s against a bare ring's 25-35 M.
    /// Claimed here all at once, the other core gives them up together while the writer appends, and the same stream ran
    /// at 35-44 M (AMD EPYC guest, 2026-12-06; benchmarks/README.md "A pack's lines claimed at once"). After the publish,
    /// so the first message is not held up behind these stores (claimed before it, a oneway echo's p99 doubled far).
    /// </remarks>
    private static void ClaimPackLines(byte* packBase, int used)
    {
        // The cache lines themselves (a pack starts at any 8-byte boundary): from the first wholly past the entry.
        const nuint line = 64;
        nuint first = ((nuint)packBase + (nuint)(PackLayout.HeaderSize + used) + line - 1) & ~(line - 1);
        nuint end = (nuint)packBase + PackLayout.Capacity - sizeof(ulong);
        for (nuint at = first; at <= end; at += line)
        {
            // SAFETY: the word lies inside the pack (it ends before the pack's capacity), which is Used and live while it is
            // open, and mapped until Dispose, which takes the lock our caller holds; past Committed, so no published
            // byte changes.
            *(ulong*)at = 0;
        }
    }

    /// <summary>Appends a small oneway message to the open pack, which has room for it (<see cref="HasRoomInOpenPack"/>).</summary>
    /// <remarks>
    /// Forced inline, with everything it calls, so a stream's per-message code does not depend on the traffic the JIT
    /// profiled first: a process that made calls before it streamed had its send path compiled from a profile in which
    /// this branch never ran, so the JIT left it out of line, calls and all (the same stream 6-9 M messages/s after a
    /// ping-pong against 11-13 M without one, far vCPUs, 2026-12-03; see benchmarks/README.md).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void AppendToOpenPackUnsynchronized(ulong transactionId, uint code, ReadOnlySpan<byte> payload)
    {
        uint committed = _packCommitted;
        bool longForm = transactionId != _packNextId;
        WriteEntry(_packBase + PackLayout.HeaderSize + committed, transactionId, code, payload, longForm);
        _packCommitted = committed + (uint)PackLayout.EntrySize(payload.Length, longForm);
        _packEntries++;
        _packNextId = unchecked(_packNextId + _packIdStep);
        // Release: the entry's bytes are visible to a receiver that sees the new Committed (its acquire load).
        // SAFETY: _packBase points at the open pack, Used and live (the peer cannot free an open pack: such a free
        // is a violation, see DrainFreesUnsynchronized) and mapped until Dispose, which takes the lock we hold.
        Volatile.Write(ref *(uint*)_packBase, _packCommitted);
        // As a publish: wake the receiver only if it is parked (one load of the parked word otherwise), with no fence
        // if the receiver pays for it (see ParkBarrier).
        _txDoorbell.RingAfterPublish();
        _packedSent++;
        TransportMetrics.OnSent(TransactionFlags.Oneway, payload.Length);
    }

    /// <summary>
    /// <paramref name="transactionId"/>, or a new oneway id if it is <see cref="TransactionIds.AssignedOnSend"/>: under the
    /// lock, so a plain increment, and ids increase in the order the messages are published.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong IdUnsynchronized(ulong transactionId) =>
        transactionId != TransactionIds.AssignedOnSend ? transactionId : TransactionIds.Oneway(++_onewaySequence);

    /// <summary>The id <see cref="IdUnsynchronized"/> would give now, without giving it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong NextIdUnsynchronized(ulong transactionId) =>
        transactionId != TransactionIds.AssignedOnSend ? transactionId : TransactionIds.Oneway(_onewaySequence + 1);

    /// <summary>Whether an entry of <paramref name="entrySize"/> bytes fits in the open pack (its bytes and its entry count).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool HasRoomInOpenPack(int entrySize) =>
        _packOffset >= 0 && _packEntries < PackLayout.MaxEntries
        && PackLayout.HeaderSize + _packCommitted + (uint)entrySize <= PackLayout.Capacity;

    /// <summary>
    /// The bytes the entry of a message with <paramref name="transactionId"/> and <paramref name="payloadLength"/> bytes
    /// takes in the open pack: short if its id is the one that follows (see <see cref="PackLayout.IdStep"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int EntrySizeInOpenPack(ulong transactionId, int payloadLength) =>
        PackLayout.EntrySize(payloadLength, transactionId != _packNextId);

    /// <summary>Whether <paramref name="offset"/> is a live pack's (sealed and not yet freed back) that a stream filled.</summary>
    private bool IsFullLivePack(long offset)
    {
        for (int i = 0; i < _livePackCount; i++)
        {
            if (_livePacks[i] == offset)
            {
                return _livePackFull[i];
            }
        }
        return false;
    }

    /// <summary>Whether <paramref name="offset"/> is a resting pack's.</summary>
    private bool IsRestingPack(long offset)
    {
        for (int i = 0, at = _restingFirst; i < _restingCount; i++, at = at + 1 == _maxRestingPacks ? 0 : at + 1)
        {
            if (_restingPacks[at] == offset)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Marks the open pack as filled by its stream (it has no room for the next message).</summary>
    private void MarkOpenPackFullUnsynchronized()
    {
        for (int i = 0; i < _livePackCount; i++)
        {
            if (_livePacks[i] == _packOffset)
            {
                _livePackFull[i] = true;
                return;
            }
        }
    }

    /// <summary>Keeps a freed pack reserved, giving the oldest resting one back to the allocator if there are already enough.</summary>
    /// <param name="offset">The pack whose free was just honoured.</param>
    /// <param name="delivered">The transaction ring's head loaded for this drain: every resting pack's record is below it.</param>
    private void RestPackUnsynchronized(long offset, ulong delivered)
    {
        if (_restingCount == _maxRestingPacks)
        {
            ReleaseOldestRestingPackUnsynchronized(delivered);
        }
        int at = _restingFirst + _restingCount;
        _restingPacks[at >= _maxRestingPacks ? at - _maxRestingPacks : at] = offset;
        Volatile.Write(ref _restingCount, _restingCount + 1);
    }

    /// <summary>
    /// Takes the oldest resting pack as the next one while the rest is full but for the packs opened since the last
    /// read of the frees: the buffer is reserved again where it lies (<see cref="BufferAllocator.RecycleUnderLock"/>), so a
    /// stream's turnover makes no reservation and no free, and no page changes state. A rest below that grows from new
    /// reservations instead, so a stream rotates through its live packs and all the resting ones (see
    /// <see cref="PackLayout.RestingPacksFor"/>).
    /// </summary>
    /// <remarks>
    /// The frees are read at every <see cref="LazyDrainPacks"/>-th pack, so the rest fills at a read and the packs opened
    /// until the next take from it; recycling only from a full rest, as when the frees were read at every seal, recycled
    /// one pack in four. A 64 B stream on the EPYC guest (4 resting, far vCPUs) recycling from one resting measured median
    /// 19.5 against 17.4-17.9 M messages/s that way, better in 8 of 8 alternated pairs; this rule recycles 92-96% of the
    /// packs there (session 2026-12-05 16:00, benchmarks/README.md "Frees read every 4th pack").
    /// </remarks>
    /// <returns><see langword="false"/> (nothing taken) if too few rest or the live-buffer limit is reached.</returns>
    private bool TryRecycleRestingPackUnsynchronized(out long offset)
    {
        if (_restingCount == 0 || _restingCount + _packsSinceDrain < _maxRestingPacks || _liveBuffers >= _maxLiveBuffers)
        {
            offset = 0;
            return false;
        }
        offset = _restingPacks[_restingFirst];
        // Reserved again first: if the allocator refuses (its state and the rest disagree), the pack is still resting,
        // and given back with the rest.
        _allocator.RecycleUnderLock(offset, PackLayout.Capacity);
        _restingFirst = _restingFirst + 1 == _maxRestingPacks ? 0 : _restingFirst + 1;
        Volatile.Write(ref _restingCount, _restingCount - 1);
        CountReservationUnsynchronized(PackLayout.Capacity);
        _packsRecycled++;
        return true;
    }

    /// <summary>Gives every resting pack back to the allocator.</summary>
    /// <returns>How many went back.</returns>
    private int ReleaseRestingPacksUnsynchronized()
    {
        int released = _restingCount;
        if (released != 0)
        {
            ulong delivered = _txRing.LoadHead();
            while (_restingCount != 0)
            {
                ReleaseOldestRestingPackUnsynchronized(delivered);
            }
        }
        return released;
    }

    private void ReleaseOldestRestingPackUnsynchronized(ulong delivered)
    {
        long offset = _restingPacks[_restingFirst];
        _restingFirst = _restingFirst + 1 == _maxRestingPacks ? 0 : _restingFirst + 1;
        Volatile.Write(ref _restingCount, _restingCount - 1);
        // Freeable: it was when it came to rest (IsFreeableUnderLock), and the head only grows. Counted freed then.
        FreeResult result = _allocator.FreeUnderLock(offset, delivered);
        Debug.Assert(result == FreeResult.Freed, "A resting pack was freeable when it came to rest.");
    }

    /// <summary>Forgets a live pack whose free was just honoured: a pack may be opened in its place.</summary>
    private void ForgetLivePack(long offset)
    {
        for (int i = 0; i < _livePackCount; i++)
        {
            if (_livePacks[i] == offset)
            {
                _livePacks[i] = _livePacks[--_livePackCount];
                _livePackFull[i] = _livePackFull[_livePackCount];
                // The receiver frees packs again: the next time every pack is in use is worth a wait again.
                _packWaitGaveUp = false;
                return;
            }
        }
    }

    /// <summary>
    /// Every pack this writer may keep live is in use and the open one (if any) has no room for <paramref name="payloadLength"/>
    /// bytes: waits up to <see cref="ChannelOptions.PackWait"/> for the receiver to free one, draining frees, with the lock
    /// released between looks; returns with the lock held, a pack back (the message is packed) or the wait over (it goes as
    /// a record of its own).
    /// </summary>
    /// <remarks>
    /// A stream that outruns its receiver reaches the limit at once and stays there; without the wait, every message sent
    /// until the receiver's next pack free went as a record of its own, which costs the receiver more per message than a
    /// packed one (a ring record, a slab slot, a free record), so the receiver fell further behind: 44-49% of a 64 B
    /// stream's messages went unpacked with close vCPUs. Waiting is flow control: the receiver is the bottleneck then,
    /// and a message sent sooner would only wait in its backlog. The lock is released between looks, so calls, replies
    /// and other senders go on meanwhile (packs never hold up a call). A receiver that holds its messages (a handler
    /// keeping one while it waits for a call behind the packs: see <see cref="PackLayout.MaxLivePacks"/>) frees nothing:
    /// the wait gives up once and is not tried again until a pack comes back, so such a sender loses one wait, not one
    /// per message. Off for <see cref="WaitStrategy.Park"/>, whose user asked for no spinning. Out of line: the stream's
    /// sends never come here while a pack has room.
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The channel was disposed meanwhile (the lock is held).</exception>
    /// <exception cref="ProtocolViolationException">The peer wrote an invalid free ring tail or a forged free.</exception>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForLivePackUnsynchronized(int payloadLength)
    {
        if (_packWaitGaveUp || _packWaitTicks <= 0)
        {
            return;
        }
        _packWaits++;
        long start = Stopwatch.GetTimestamp();
        while (true)
        {
            DrainFreesUnsynchronized();
            // Another sender may have opened a pack while we did not hold the lock.
            // Room for a long entry: whatever its id, the message then fits.
            if (_livePackCount < _maxLivePacks || HasRoomInOpenPack(PackLayout.EntrySize(payloadLength, longForm: true)))
            {
                return;
            }
            if (Stopwatch.GetTimestamp() - start >= _packWaitTicks)
            {
                _packWaitGaveUp = true;
                return;
            }
            // Nothing between the exit and the enter throws, so the caller's scope always finds the lock ours (but for an
            // interrupted park inside Enter, Thread.Interrupt: the scope's exit then throws SynchronizationLockException).
            _lock.Exit();
            for (int i = 0; i < 8; i++)
            {
                Doorbell.PausePoll();
            }
            _lock.Enter();
            ThrowIfDisposed();
        }
    }

    /// <summary>Writes one entry (header and payload) at <paramref name="target"/>, inside the open pack.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WriteEntry(byte* target, ulong transactionId, uint code, ReadOnlySpan<byte> payload, bool longForm)
    {
        // SAFETY: the caller checked that the entry (EntrySize(payload.Length, longForm) bytes) fits before the pack's
        // capacity, and the pack is Used and mapped (see TrySendPackedUnsynchronized). The length is at most MaxPayload.
        *(PackEntryLayout*)target = new PackEntryLayout
        {
            Length = (ushort)payload.Length,
            Form = longForm ? PackLayout.LongForm : PackLayout.ShortForm,
            Code = code,
        };
        int header = PackLayout.EntryHeaderSize;
        if (longForm)
        {
            *(ulong*)(target + PackLayout.EntryHeaderSize) = transactionId;
            header = PackLayout.LongEntryHeaderSize;
        }
        payload.CopyTo(new Span<byte>(target + header, payload.Length));
    }

    /// <summary>Seals the open pack, if any: no more entries; the next small oneway opens a new one.</summary>
    /// <param name="nextPack">The pack opened next, already written and not yet published, named in the sealed one's
    /// header as a hint (<see cref="PackLayout.NextPackHintOffset"/>); -1 when none follows at once.</param>
    private void SealPackUnsynchronized(long nextPack = -1)
    {
        if (_packOffset < 0)
        {
            return;
        }
        // The frees published so far were published before the seal, so none may name this pack: an honest receiver
        // frees a pack only once it saw the seal. Drained now, a forged one is caught (the pack is still open); after the
        // seal the writer cannot tell it from an honest one. A stream's turnover (a next pack) drains only at every
        // LazyDrainPacks-th pack, or when the pack it opens is the last it may keep live: a free published before that
        // seal and read after it is honoured as an honest one, which costs the writer nothing (it writes nothing into a
        // sealed pack), and the receiver that freed early spoils only its own messages' bytes.
        if (nextPack < 0 || ++_packsSinceDrain >= _lazyDrainPacks || _livePackCount + 1 >= _maxLivePacks)
        {
            DrainFreesUnsynchronized();
        }
        if (nextPack >= 0)
        {
            // A plain store on the seal's line: the release below publishes it with the seal.
            // SAFETY: as below: the open pack is Used, live and mapped while we hold the lock; 8 bytes inside its header line.
            *(ulong*)(_packBase + PackLayout.NextPackHintOffset) = PackLayout.NextPackHint(nextPack);
        }
        // Release: every entry is visible before the seal. Before any later record is published (the caller's), so
        // a receiver that sees that record sees the seal.
        // SAFETY: as in TrySendPackedUnsynchronized: the open pack is Used, live and mapped while we hold the lock.
        Volatile.Write(ref *(uint*)_packBase, _packCommitted | PackLayout.SealedBit);
        Volatile.Write(ref _packOffset, -1);
        _packBase = null;
        // A parked receiver that has taken every entry waits for the seal to finish the pack (and free it). As a publish.
        _txDoorbell.RingAfterPublish();
    }

    private bool TryReserveUnsynchronized(int size, bool oneway, bool clearOnFree, out long offset, bool allowSlab = true)
    {
        // Frees of small messages are read lazily: the free ring's tail and the transaction ring's head are lines the
        // receiver writes with every message, so reading them on every send costs two cache-line transfers per
        // message, which matters next to a small copy. They are read once a batch has built up (LazyDrainBuffers
        // live and as many sends since the last drain: in a stream more than a batch is always live, and counting
        // live buffers alone drained at every send; or LazyDrainBytes reserved since the last drain, which bounds the
        // freed-but-untaken memory), and
        // always before this side reports the region full. A larger message drains first, as before: its copy dwarfs
        // two line transfers, and taking the frees first lets it reuse the pages just freed (still backed, on the LRU)
        // instead of backing new ones. A channel that ever sent a clear-on-free buffer drains at every send: its
        // buffers are zeroed when the free is taken, and a secret should not wait in the region for a batch to fill.
        _eagerDrain |= clearOnFree;
        if (_eagerDrain || size > LazyDrainMaxMessage || (_liveBuffers >= LazyDrainBuffers && _sendsSinceDrain >= LazyDrainBuffers) || _bytesSinceDrain >= LazyDrainBytes)
        {
            DrainFreesUnsynchronized();
        }
        if (!TryReserveAfterDrain(size, oneway, clearOnFree, allowSlab, out offset)
            && (DrainFreesUnsynchronized() == 0 || !TryReserveAfterDrain(size, oneway, clearOnFree, allowSlab, out offset))
            // Resting packs hold room only while nothing else needs it.
            && (ReleaseRestingPacksUnsynchronized() == 0 || !TryReserveAfterDrain(size, oneway, clearOnFree, allowSlab, out offset)))
        {
            return false;
        }
        CountReservationUnsynchronized(size);
        return true;
    }

    /// <summary>A buffer reserved (or a resting pack reserved again): one more live buffer, toward the next lazy drain.</summary>
    private void CountReservationUnsynchronized(int size)
    {
        _liveBuffers++;
        _bytesSinceDrain += size;
        _sendsSinceDrain++;
    }

    private bool TryReserveAfterDrain(int size, bool oneway, bool clearOnFree, bool allowSlab, out long offset)
    {
        if (_liveBuffers >= _maxLiveBuffers)
        {
            offset = 0;
            return false;
        }
        // A small message takes a slot of a shared slab: no allocator reservation or page-state change. Not one to be
        // cleared on free (a slot is not zeroed). Oneway messages and calls/replies have slabs of their own, as a
        // oneway slab is charged to the oneway quota and a call's is not. The receiver sees a slot as any buffer: no
        // wire change.
        if (allowSlab && !clearOnFree && BufferSlabs.Fits(size) && (oneway ? _slabs : _callSlabs).TryReserveUnderLock(s_pid, out offset))
        {
            return true;
        }
        return _allocator.TryReserveUnderLock(size, oneway, clearOnFree, s_pid, out offset);
    }

    /// <summary>
    /// Publishes a small call, reply or error reply with its payload inline (see <see cref="InlineLayout"/>): no buffer,
    /// one live transaction counted until its free comes back. <see langword="false"/> (nothing sent) when the live
    /// limit is reached or the ring has not the room to keep a slot for every buffer that may still go live; the caller
    /// then takes the buffer path, which reports the region full if it is.
    /// </summary>
    private bool TryPublishInlineUnsynchronized(ulong transactionId, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, in RecordContext context)
    {
        if (!HasRoomForInlineUnsynchronized())
        {
            return false;
        }
        TransactionRecordLayout record = new()
        {
            TransactionId = transactionId,
            Length = (uint)payload.Length,
            Code = code,
            Flags = (uint)flags | InlineLayout.RecordFlag,
            Status = (uint)context.Status,
            ChainId = context.ChainId,
            Depth = context.Depth,
        };
        // A buffer's record must always find a slot (a full ring means a receiver that freed what it had not received,
        // PublishUnsynchronized), and every transaction consumed but not yet freed may be freed before the slots of
        // those still on the ring come back: so the slots waiting on the ring may be at most the ring's surplus over
        // the live limit. Then the payload slots on the ring never exceed the surplus, and with at most MaxLiveBuffers
        // - 1 other records on it a buffer's record still fits. The default 1,024-slot ring keeps 128 (live limit 896,
        // RegionLayout.InlineSurplus). A receiver that frees inline transactions it has not taken only makes us count
        // fewer live than it holds: the bound still holds (each such free stands for a record with a payload slot on
        // the ring), and its own slots are what overflow.
        if (!_txRing.TryPublishInline(in record, payload, maxUnconsumed: _maxUnconsumedForInline))
        {
            return false;
        }
        _liveBuffers++;
        _inlineLive++;
        _sendsSinceDrain++;
        Volatile.Write(ref _inlineSent, _inlineSent + 1);
        // As a buffer's publish (PublishUnsynchronized): inside the lock, no fence to a receiver that pays for it.
        _txDoorbell.RingAfterPublish();
        TransportMetrics.OnSent(flags, payload.Length);
        return true;
    }

    /// <summary>
    /// Whether one more inline transaction (in the ring or a direct line set) may go live now: the frees read lazily, as
    /// for a small buffer (<see cref="TryReserveUnsynchronized"/>: inline transactions come back as frees too, and a stream
    /// of them must not let the free ring fill before we look), and once more at the live limit.
    /// </summary>
    private bool HasRoomForInlineUnsynchronized()
    {
        if (_eagerDrain || (_liveBuffers >= LazyDrainBuffers && _sendsSinceDrain >= LazyDrainBuffers) || _bytesSinceDrain >= LazyDrainBytes)
        {
            DrainFreesUnsynchronized();
        }
        int maxLive = _maxLiveBuffers;
        return _liveBuffers < maxLive || (DrainFreesUnsynchronized() != 0 && _liveBuffers < maxLive);
    }

    /// <summary>
    /// Copies a payload of at most <see cref="DirectReplyLayout.MaxPayload"/> bytes into the payload lines after a direct
    /// line set's <paramref name="record"/> line (<see cref="DirectReplyLayout"/>, <see cref="DirectCallLayout"/>). The
    /// caller holds the send lock after its disposed check, so the lines are mapped.
    /// </summary>
    private static void WritePayloadLines(TransactionRecordLayout* record, ReadOnlySpan<byte> payload)
    {
        Debug.Assert(payload.Length <= DirectReplyLayout.MaxPayload, "At most the payload lines.");
        // SAFETY: record is the record line of one of the two direct line sets the constructor found inside the mapping
        // (kept mapped by the caller's send lock, see the remarks); the payload lines follow it and the copy is at most
        // their MaxPayload bytes (the destination span is that long, so a longer payload fails here in every build).
        byte* lines = (byte*)record + TransactionRecordLayout.Size;
        if (payload.Length == TransactionRecordLayout.Size)
        {
            // A whole line: a constant size, which the JIT copies with vector moves instead of a call.
            Unsafe.CopyBlockUnaligned(ref *lines, ref System.Runtime.InteropServices.MemoryMarshal.GetReference(payload), TransactionRecordLayout.Size);
        }
        else
        {
            payload.CopyTo(new Span<byte>(lines, DirectReplyLayout.MaxPayload));
        }
    }

    /// <summary>
    /// Writes a reply or error reply of at most <see cref="DirectReplyLayout.MaxPayload"/> bytes into the peer's direct
    /// reply lines (see <see cref="DirectReplyLayout"/>), for a call that asked for it: the payload lines, the record's
    /// fields, then its id (a release store), which the waiting reader looks for. Counted live as an inline transaction
    /// until its free comes back. <see langword="false"/> (nothing written) at the live limit; the caller then takes the
    /// ring, which waits for room.
    /// </summary>
    private bool TryPublishDirectReplyUnsynchronized(ulong transactionId, uint code, TransactionFlags flags, ReadOnlySpan<byte> payload, CallStatus status)
    {
        if (!HasRoomForInlineUnsynchronized())
        {
            return false;
        }
        // SAFETY: _directReply points at the reply's line set, which the constructor found inside the mapping; the caller holds
        // the send lock and checked the channel is not disposed, and Dispose takes that lock before it unmaps. The
        // payload is at most MaxPayload bytes, written into the payload lines after the record's.
        TransactionRecordLayout* record = _directReply;
        WritePayloadLines(record, payload);
        record->BufferOffset = 0;
        record->Length = (uint)payload.Length;
        record->Code = code;
        record->Flags = (uint)flags;
        record->Status = (uint)status;
        record->ChainId = 0;
        record->Depth = 0;
        record->MetadataLength = 0;
        record->Reserved0 = 0;
        // Its place in the ring's order: after every record published so far (see DirectReplyLayout).
        record->Reserved1 = _txRing.Tail;
        // Release: the payload and the fields above are visible to whoever sees this id.
        Volatile.Write(ref record->TransactionId, transactionId);
        _liveBuffers++;
        _inlineLive++;
        _sendsSinceDrain++;
        Volatile.Write(ref _directRepliesSent, _directRepliesSent + 1);
        // As a record's publish: the reader waits for it on the ring's doorbell.
        _txDoorbell.RingAfterPublish();
        TransportMetrics.OnSent(flags, payload.Length);
        return true;
    }

    /// <summary>
    /// Writes a call of at most <see cref="DirectCallLayout.MaxPayload"/> bytes into the peer's direct call lines (see
    /// <see cref="DirectCallLayout"/>), which the caller (the connection) guarantees are free: the payload lines, the
    /// record's fields, then its sequence (a release store), which the receiver looks for. Counted live as an inline
    /// transaction until its free comes back. <see langword="false"/> (nothing written) at the live limit; the caller
    /// then takes the ring, which waits for room.
    /// </summary>
    private bool TryPublishDirectCallUnsynchronized(ulong transactionId, uint code, TransactionFlags wire, ReadOnlySpan<byte> payload, in RecordContext context)
    {
        if (!HasRoomForInlineUnsynchronized())
        {
            return false;
        }
        // SAFETY: as in TryPublishDirectReplyUnsynchronized: lines of the mapping the constructor found inside it,
        // written under the send lock after the disposed check, at most MaxPayload bytes into the payload lines.
        TransactionRecordLayout* record = _directCall;
        WritePayloadLines(record, payload);
        record->TransactionId = transactionId;
        record->BufferOffset = 0;
        record->Length = (uint)payload.Length;
        record->Code = code;
        record->Flags = (uint)wire;
        record->Status = 0;
        record->ChainId = context.ChainId;
        record->Depth = context.Depth;
        record->MetadataLength = 0;
        // Its place in the ring's order: after every record published so far (see DirectCallLayout).
        record->Reserved1 = _txRing.Tail;
        // Release: the payload and the fields above are visible to whoever sees this sequence.
        Volatile.Write(ref record->Reserved0, _directCallSequence + 1);
        Volatile.Write(ref _directCallSequence, _directCallSequence + 1);
        _liveBuffers++;
        _inlineLive++;
        _sendsSinceDrain++;
        _txDoorbell.RingAfterPublish();
        TransportMetrics.OnSent(wire, payload.Length);
        return true;
    }

    /// <summary>Commits the reserved buffer at <paramref name="offset"/> and publishes its record: payload, record, tail.</summary>
    private void PublishUnsynchronized<TStores>(
        ref TStores stores, long offset, int length, ulong transactionId, uint code, TransactionFlags flags, in RecordContext context,
        bool countSent = true)
        where TStores : IPublishStores<TransactionRecordLayout>, allows ref struct
    {
        // An honest receiver consumes a record before it frees the buffer, so records waiting on the ring are live
        // buffers, fewer than MaxLiveBuffers, and inline payload slots waiting there are at most the ring's surplus over
        // MaxLiveBuffers (TryPublishInlineUnsynchronized): a slot is free. If none is, the peer freed buffers it had
        // not received. Check before committing, so the buffer can still be aborted.
        bool hasSlot;
        try
        {
            hasSlot = _txRing.HasFreeSlot();
        }
        catch (ProtocolViolationException)
        {
            AbortUnsynchronized(offset);
            throw;
        }
        if (!hasSlot)
        {
            AbortUnsynchronized(offset);
            throw new ProtocolViolationException(
                $"The transaction ring is full with only {_liveBuffers} other buffers live: the peer freed buffers it had not received.");
        }
        // The record goes to position Tail of the ring: the buffer becomes freeable once the receiver's head passes it.
        if (TryFindSlab(offset, out BufferSlab? slab, out _))
        {
            slab.Commit(offset, _txRing.Tail);
        }
        else
        {
            _allocator.CommitUnderLock(offset, _txRing.Tail);
        }
        TransactionRecordLayout record = new()
        {
            TransactionId = transactionId,
            BufferOffset = (ulong)offset,
            Length = (uint)length,
            Code = code,
            Flags = (uint)flags,
            Status = (uint)context.Status,
            ChainId = context.ChainId,
            Depth = context.Depth,
            MetadataLength = (uint)context.Metadata.Length,
        };
        bool published = _txRing.TryPublish(ref stores, in record);
        Debug.Assert(published, "FreeSlots said a slot is free, and only this thread (holding the lock) publishes.");
        // Inside the lock: Dispose takes it before unmapping, so the doorbell's words are still mapped. No fence if the
        // receiver pays for it when it parks (see ParkBarrier): with far vCPUs the round trip measured no better
        // without (the fence waits for lines the other core has, after the tail is out), but it is a tenth of a call's
        // own work in the one-thread probe, which is what the round trip is made of when both vCPUs share a core.
        _txDoorbell.RingAfterPublish();
        if (countSent)
        {
            TransportMetrics.OnSent(flags, length);
        }
    }

    /// <summary>
    /// The bytes of a buffer just reserved, to copy a message into: a slot of a slab being filled without the range's
    /// look at its page states (its slab keeps them Used, see <see cref="ShrinkablePageRange.GetSpanOfUsedPages"/>),
    /// any other buffer with it. The caller holds the send lock.
    /// </summary>
    private Span<byte> SpanOfReservationUnsynchronized(long offset, int length) =>
        _slabs.FindFilling(offset) is not null || _callSlabs.FindFilling(offset) is not null
            ? _pages.GetSpanOfUsedPages(offset, length)
            : _pages.GetSpan(offset, length);

    /// <summary>The slab (oneway or call) whose buffer holds <paramref name="offset"/>, and its set; or <see langword="null"/>.</summary>
    private bool TryFindSlab(long offset, [NotNullWhen(true)] out BufferSlab? slab, [NotNullWhen(true)] out BufferSlabs? owner)
    {
        // The slabs being filled first: almost every slot sent or freed is in one of them, and a call or reply found in
        // the call slabs' would otherwise come after a look at every oneway slab (8 compares per publish and per free).
        if (_slabs.FindFilling(offset) is { } filling)
        {
            owner = _slabs;
            slab = filling;
            return true;
        }
        if (_callSlabs.FindFilling(offset) is { } callFilling)
        {
            owner = _callSlabs;
            slab = callFilling;
            return true;
        }
        owner = _slabs;
        slab = _slabs.Find(offset);
        if (slab is null)
        {
            owner = _callSlabs;
            slab = _callSlabs.Find(offset);
        }
        return slab is not null;
    }

    private void AbortUnsynchronized(long offset)
    {
        if (TryFindSlab(offset, out BufferSlab? slab, out BufferSlabs? owner))
        {
            owner.AbortUnderLock(slab, offset);
        }
        else
        {
            _allocator.AbortUnderLock(offset);
        }
        _liveBuffers--;
    }

    /// <summary>
    /// One bounded pass over the free ring: takes only the frees published when it began (the tail is loaded once and
    /// lies at most a ring ahead of our head), so a peer that keeps publishing frees for ever cannot keep this loop,
    /// and the lock, for ever. Callers check their deadline, cancellation and disposal between passes.
    /// </summary>
    private int DrainFreesUnsynchronized()
    {
        _bytesSinceDrain = 0;
        _sendsSinceDrain = 0;
        _packsSinceDrain = 0;
        int ready = _freeRing.Count();
        if (ready == 0)
        {
            return 0;
        }
        // Binder's delivery rule: a buffer is freeable once the receiver took its record off the transaction ring.
        // The head is loaded after the free ring's tail, so it is at least the head the receiver had stored when it
        // published these frees (it advances the head, with a release store, before it frees).
        ulong delivered = _txRing.LoadHead();
        for (int i = 0; i < ready; i++)
        {
            bool peeked = _freeRing.TryPeek(out FreeRecordLayout free);
            Debug.Assert(peeked, "Count said this many records are ready, and only this thread (holding the lock) consumes.");
            // The record is a private copy now: hand the slot back before acting on it.
            _freeRing.Advance();
            ulong offset = free.BufferOffset;
            if (offset == InlineLayout.FreeOffset && _inlineLive > 0)
            {
                // An inline transaction's free (see InlineLayout): no buffer, one live transaction fewer. Beyond the
                // inline ones live it is a stray free, ignored below as any unknown offset. Which one it was does not
                // matter: none holds memory, and a receiver that frees one it has not received only lets us send it more
                // than its own slots hold, which is its violation to report.
                _inlineLive--;
                _liveBuffers--;
                Volatile.Write(ref _buffersFreed, _buffersFreed + 1);
            }
            else if (offset >= (ulong)_layout.DataSize)
            {
                _outOfRangeFrees++;
            }
            else if (_packOffset >= 0 && offset - (ulong)_packOffset < PackLayout.Capacity)
            {
                // We are still appending to it: an honest receiver frees a pack only once it is sealed and consumed,
                // and no message inside a pack has a buffer of its own. Honouring it would hand the pack's pages to
                // another message while we write entries into them.
                throw new ProtocolViolationException(
                    $"The peer freed offset {offset}, inside the pack at {_packOffset} that is still open: a forged free.");
            }
            else if (TryFindSlab((long)offset, out BufferSlab? slab, out BufferSlabs? owner))
            {
                FreeSlotUnsynchronized(owner, slab, (long)offset, delivered);
            }
            else if (_maxRestingPacks > 0 && !_packsIdle && _livePackCount != 0 && IsFullLivePack((long)offset) && _allocator.IsFreeableUnderLock((long)offset, delivered))
            {
                // The pack's free honoured as any buffer's (the same checks, above and in IsFreeableUnderLock), but its
                // buffer rests before the allocator gets it back (see PackLayout.RestingPacksFor).
                _liveBuffers--;
                Volatile.Write(ref _buffersFreed, _buffersFreed + 1);
                ForgetLivePack((long)offset);
                RestPackUnsynchronized((long)offset, delivered);
            }
            else if (_restingCount != 0 && IsRestingPack((long)offset))
            {
                // A second free of a pack whose free was honoured already (a receiver frees a pack once): ignored, as
                // binder ignores a stray free. Honoured, it would give the buffer back while it rests, and the rest's
                // end would then free whatever buffer the allocator had placed there since.
                _restingPackFreesIgnored++;
            }
            else if (_allocator.FreeUnderLock((long)offset, delivered) == FreeResult.Freed)
            {
                _liveBuffers--;
                Volatile.Write(ref _buffersFreed, _buffersFreed + 1);
                if (_livePackCount != 0)
                {
                    ForgetLivePack((long)offset);
                }
            }
        }
        return ready;
    }

    /// <summary>
    /// A free of an offset inside a slab, from the private copy of the record. A slot is freed once, after its record
    /// was taken off the ring, as a buffer is; unlike a stray free of a buffer (binder ignores those), a free inside a
    /// slab that names no slot's start, or a slot that is free or was never published, is a violation: the slab is
    /// this side's own arrangement, and no honest receiver can name an offset in it that was not sent to it, or free
    /// one twice without freeing a slot the writer has meanwhile handed to a later message.
    /// </summary>
    /// <exception cref="ProtocolViolationException">The free is forged or doubled.</exception>
    private void FreeSlotUnsynchronized(BufferSlabs owner, BufferSlab slab, long offset, ulong delivered)
    {
        switch (owner.FreeUnderLock(slab, offset, delivered))
        {
            case SlotFreeResult.Freed:
                _liveBuffers--;
                Volatile.Write(ref _buffersFreed, _buffersFreed + 1);
                break;
            case SlotFreeResult.Undelivered:
                // As a buffer's: the receiver cannot have read it yet; ignored and counted, the slot stays live.
                Volatile.Write(ref _slotUndeliveredFrees, _slotUndeliveredFrees + 1);
                break;
            case SlotFreeResult.NotASlot:
                throw new ProtocolViolationException(
                    $"The peer freed offset {offset}, inside the slab at {slab.Offset} but at no slot's start ({BufferSlab.SlotSize}-byte slots).");
            default:
                throw new ProtocolViolationException(
                    $"The peer freed the slot at offset {offset} (slab at {slab.Offset}), which is not live: a double or forged free.");
        }
    }

    private void WaitForFrees(long freedBefore, long deadline, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        // The doorbell holds a reference while it waits, so its words stay mapped even if Dispose runs meanwhile.
        FreesReady condition = new(this, freedBefore);
        _freeDoorbell.Wait(ref condition, _options.WaitStrategy, _options.SpinDuration, _options.ParkTimeout, deadline, cancellationToken);
        ThrowIfDisposed();
    }

    private void CheckPending(in PendingBuffer buffer)
    {
        if (!ReferenceEquals(buffer.Channel, this))
        {
            throw new ArgumentException("The buffer is not pending on this channel: it was committed or aborted already, or reserved elsewhere.", nameof(buffer));
        }
    }

    private static void ValidateFlags(TransactionFlags flags)
    {
        if (!flags.IsValid())
        {
            ThrowBadFlags(flags);
        }
    }

    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }

    [DoesNotReturn]
    private static void ThrowBadFlags(TransactionFlags flags) =>
        throw new ArgumentException($"Transaction flags need exactly one of Oneway, TwoWay, Reply, ErrorReply and no unknown bit; got 0x{(uint)flags:x}.", nameof(flags));

    [DoesNotReturn]
    private void ThrowRegionFull(int size, TransactionFlags flags, TimeSpan timeout) =>
        throw new RegionFullException(
            $"No room for a {size}-byte {(flags.IsOneway() ? "oneway " : "")}transaction in the peer's region within {timeout}: " +
            $"{LiveBuffers} buffers live (limit {_layout.MaxLiveBuffers}), {_allocator.GetStats()}.");

    /// <summary>
    /// Ready when the peer published a free, another sender drained one, the channel is disposed, or
    /// <see cref="WakeWriter"/> was called since the condition was made.
    /// </summary>
    private readonly struct FreesReady(OutboundChannel channel, long freedBefore) : IWaitCondition
    {
        private readonly int _wakesBefore = Volatile.Read(ref channel._writerWakes);

        public bool IsReady =>
            Volatile.Read(ref channel._disposed) != 0
            || Volatile.Read(ref channel._buffersFreed) != freedBefore
            || channel._freeRing.HasData
            || Volatile.Read(ref channel._writerWakes) != _wakesBefore;

        public bool PollReady() => IsReady;
    }
}
