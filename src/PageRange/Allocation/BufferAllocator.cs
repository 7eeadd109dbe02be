// Lock order: the allocator lock comes before every lock of the page range (mm lock -> range lock -> LRU lock).
// StopUsingRange runs while the allocator lock is held; UseRange runs after it is released, because backing a page
// is a system call that may block and binder, too, installs pages after dropping its allocator lock. With a
// BufferAllocatorOptions.SharedLock (a connection's send lock) there is no lock of ours to drop: the owner holds its lock
// across the backing, so a send that must back a page keeps other sends of that connection (and the draining of its
// frees) waiting meanwhile; the page range's own locks are still not held across anything but the backing itself.

using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Allocation;

/// <summary>
/// Carves transaction buffers out of a region's data area the way binder's range allocator does, and tells the
/// <see cref="ShrinkablePageRange"/> which pages a buffer newly covers and which a freed buffer leaves unused.
/// </summary>
/// <remarks>
/// <para>
/// Placement follows binder's Rust allocator: no bookkeeping while Empty; a sorted array of at most
/// <see cref="TreeThreshold"/> live buffers with first fit biased to append; from the next live buffer on, trees
/// with best fit (smallest free range that fits, ties to the lowest offset), back to Empty when the last buffer goes.
/// Free neighbours are always merged. Sizes are rounded up to 8 bytes, with a minimum of 8.
/// </para>
/// <para>
/// Lifecycle: <see cref="Reserve"/> makes a Reserved buffer the writer fills; <see cref="Commit(long, ulong)"/> delivers it
/// (Allocated); <see cref="Free(long, ulong)"/> gives an Allocated buffer back, <see cref="Abort"/> a Reserved one.
/// </para>
/// <para>
/// The allocator runs in the region's writer process and its state is private to it. Thread safety: every member
/// may be called from any thread. One lock guards the bookkeeping; nothing is allocated on the heap while it is held
/// (tree extents come from a pool that grows outside the lock, as binder preallocates before taking its lock), and
/// in steady state nothing is allocated at all.
/// </para>
/// </remarks>
internal sealed partial class BufferAllocator
{
    /// <summary>The most live buffers array mode holds (binder's <c>TREE_THRESHOLD</c>).</summary>
    internal const int TreeThreshold = 8;

    /// <summary>Every size and offset is a multiple of this.</summary>
    internal const long Alignment = 8;

    /// <summary>The smallest buffer, so that every buffer, even an empty one, has its own offset.</summary>
    internal const long MinimumSize = 8;

    /// <summary>A sender with more live oneway buffers than this, while the quota is low, is a spam suspect.</summary>
    internal const int SpamBufferThreshold = 50;

    private const int Nil = -1;

    /// <summary>Enough for the conversion to a tree and a few more buffers.</summary>
    private const int InitialPoolCapacity = 32;

    /// <summary>
    /// Converting a full array takes one extent per buffer and one per gap around them, then the placement that
    /// follows may split off a remainder (binder reserves 2·8+1 nodes, plus the insertion's).
    /// </summary>
    private const int ConversionExtents = (2 * TreeThreshold) + 2;

    private readonly ThinLock _lock;
    private readonly ShrinkablePageRange _pages;
    private readonly ILogger _logger;
    private readonly long _pageSize;

    /// <summary>Array mode: the live buffers, sorted by offset, in <c>[0, _arrayCount)</c>.</summary>
    private readonly Extent[] _array = new Extent[TreeThreshold];
    private int _arrayCount;

    /// <summary>Tree mode: the extent pool. Replaced (never resized in place) when it grows.</summary>
    private Extent[] _extents;
    private int _pool = Nil;
    private int _poolCount;
    private int _first = Nil;
    private int _offsetRoot = Nil;
    private int _sizeRoot = Nil;

    private AllocatorMode _mode;
    private int _bufferCount;
    private long _freeOnewaySpace;

    /// <summary>C's <c>oneway_spam_detected</c>: set by the report, cleared by a oneway reservation that leaves enough quota.</summary>
    private bool _onewaySpamDetected;
    private long _ignoredFrees;
    // The ignored frees' log lines, rate-limited as binder's are (binder_user_error: pr_info_ratelimited): a peer that
    // publishes bogus frees by the ring-full would otherwise write a line each, under the send lock, into the user's log.
    private readonly LogRateLimit _ignoredFreeLog = new(IgnoredFreeLogBurst, TimeSpan.FromSeconds(5));
    private long _undeliveredFrees;
    private long _failedReservations;
    private long _onewaySpamReports;

    /// <summary>Creates an allocator over the whole of <paramref name="pages"/>: byte 0 of the range is offset 0.</summary>
    /// <param name="pages">The data area's pages; the allocator marks them Used and Available but does not own them.</param>
    /// <param name="options">Settings; defaults when <see langword="null"/>.</param>
    internal BufferAllocator(ShrinkablePageRange pages, BufferAllocatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pages);
        _pages = pages;
        _lock = options?.SharedLock ?? new ThinLock();
        _logger = options?.Logger ?? PageRangeLog.CreateLogger(null, PageRangeLogEvents.AllocationCategory);
        _pageSize = SharedRegion.PageSize;
        DataSize = pages.ByteCount;
        _freeOnewaySpace = OnewayQuota;
        _extents = new Extent[InitialPoolCapacity];
        AddToPoolUnsynchronized(0);
    }

    /// <summary>
    /// Raised after a oneway reservation that makes its sender a spam suspect, once per low-quota episode (C's latch).
    /// The reservation itself succeeded.
    /// </summary>
    /// <remarks>
    /// Raised outside the lock on the reserving thread. If a handler throws, the reservation is aborted and the
    /// exception propagates out of <see cref="Reserve"/>.
    /// </remarks>
    internal event EventHandler<OnewaySpamSuspectedEventArgs>? OnewaySpamSuspected;

    /// <summary>Bytes in the data area.</summary>
    internal long DataSize { get; }

    /// <summary>The most bytes oneway buffers may hold at once: half the data area, as binder.</summary>
    internal long OnewayQuota => DataSize / 2;

    /// <summary>The oneway quota left now.</summary>
    internal long FreeOnewaySpace
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _freeOnewaySpace;
            }
        }
    }

    /// <summary>Live buffers: Reserved, Allocated or being freed.</summary>
    internal int BufferCount
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _bufferCount;
            }
        }
    }

    /// <summary>Frees of unknown, undelivered or already freed offsets, ignored so far.</summary>
    internal long IgnoredFrees
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _ignoredFrees;
            }
        }
    }

    /// <summary>Frees of buffers whose record was still on the transaction ring, ignored so far (counted in <see cref="IgnoredFrees"/> too).</summary>
    internal long UndeliveredFrees
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _undeliveredFrees;
            }
        }
    }

    /// <summary>How the extents are kept right now.</summary>
    internal AllocatorMode Mode
    {
        get
        {
            using (_lock.EnterScope())
            {
                return _mode;
            }
        }
    }

    /// <summary>The pages the data area lives in.</summary>
    internal ShrinkablePageRange Pages => _pages;

    /// <summary>Rounds <paramref name="size"/> up to <see cref="Alignment"/>, with a minimum of <see cref="MinimumSize"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The size is negative, or rounding it overflows.</exception>
    internal static long PadSize(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        if (size > long.MaxValue - (Alignment - 1))
        {
            ThrowSizeOverflow(size);
        }
        return Math.Max((size + (Alignment - 1)) & ~(Alignment - 1), MinimumSize);
    }

    /// <summary>Reserves a buffer of at least <paramref name="size"/> bytes and backs every page it touches.</summary>
    /// <param name="size">The payload size; rounded up to a multiple of 8, at least 8.</param>
    /// <param name="oneway">Charge the buffer to the oneway quota (a non-reply oneway transaction).</param>
    /// <param name="clearOnFree">Zero the buffer when it is freed or aborted (binder's <c>TF_CLEAR_BUF</c>).</param>
    /// <param name="senderPid">The sending process, for oneway-spam detection and the dump.</param>
    /// <returns>The buffer's offset from the start of the data area; the buffer is Reserved and its pages Used.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is negative or rounding it overflows.</exception>
    /// <exception cref="MessageTooLargeException">The padded size exceeds <see cref="DataSize"/>, or
    /// <see cref="OnewayQuota"/> for a oneway buffer: it can never fit.</exception>
    /// <exception cref="RegionFullException">No free range fits now, or too little oneway quota is left.</exception>
    /// <exception cref="BackingAllocationException">A page could not be backed; the reservation was rolled back.</exception>
    internal long Reserve(long size, bool oneway, bool clearOnFree = false, int senderPid = 0)
    {
        ReserveCore(size, oneway, clearOnFree, senderPid, throwIfFull: true, callerHoldsLock: false, out long offset);
        return offset;
    }

    /// <summary>
    /// <see cref="Reserve"/>, but returns <see langword="false"/> where it would throw <see cref="RegionFullException"/>:
    /// for the transport's back-pressure loop, which waits for frees and tries again. A full region is counted but
    /// not logged here.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> is negative or rounding it overflows.</exception>
    /// <exception cref="MessageTooLargeException">The buffer can never fit.</exception>
    /// <exception cref="BackingAllocationException">A page could not be backed; the reservation was rolled back.</exception>
    internal bool TryReserve(long size, bool oneway, bool clearOnFree, int senderPid, out long offset) =>
        ReserveCore(size, oneway, clearOnFree, senderPid, throwIfFull: false, callerHoldsLock: false, out offset);

    /// <summary><see cref="TryReserve"/> for an owner that holds the <see cref="BufferAllocatorOptions.SharedLock"/>: no second lock.</summary>
    /// <remarks>Safety: the caller holds the shared lock (asserted in Debug builds).</remarks>
    /// <inheritdoc cref="TryReserve"/>
    internal bool TryReserveUnderLock(long size, bool oneway, bool clearOnFree, int senderPid, out long offset) =>
        ReserveCore(size, oneway, clearOnFree, senderPid, throwIfFull: false, callerHoldsLock: true, out offset);

    /// <summary>
    /// Enters the bookkeeping lock, unless the caller says it holds it already (the owner's shared lock): then it is
    /// only asserted, and the returned scope releases nothing.
    /// </summary>
    private Guard EnterUnlessHeld(bool callerHoldsLock)
    {
        if (callerHoldsLock)
        {
            Debug.Assert(_lock.IsHeldByCurrentThread, "An ...UnderLock call without the shared lock held.");
            return default;
        }
        _lock.Enter();
        return new Guard(_lock);
    }

    private bool ReserveCore(long size, bool oneway, bool clearOnFree, int senderPid, bool throwIfFull, bool callerHoldsLock, out long offset)
    {
        long padded = PadSize(size);
        if (padded > DataSize)
        {
            ThrowTooLarge(size, DataSize, "the region's data area");
        }
        if (oneway && padded > OnewayQuota)
        {
            ThrowTooLarge(size, OnewayQuota, "the oneway quota (half the data area)");
        }

        ReserveStatus status;
        bool spamSuspect;
        int spamBuffers;
        long spamBytes;
        long freeOnewaySpace;
        BufferAllocatorStats summary = default;
        while (true)
        {
            int capacity;
            int extentsNeeded;
            using (EnterUnlessHeld(callerHoldsLock))
            {
                status = PlaceUnsynchronized(padded, oneway, clearOnFree, senderPid, out offset, out extentsNeeded);
                spamSuspect = false;
                spamBuffers = 0;
                spamBytes = 0;
                if (status == ReserveStatus.Reserved && oneway)
                {
                    spamSuspect = CheckOnewaySpamUnsynchronized(senderPid, out spamBuffers, out spamBytes);
                }
                else if (status is ReserveStatus.NoSpace or ReserveStatus.OnewayQuotaExhausted)
                {
                    _failedReservations++;
                    if (throwIfFull)
                    {
                        summary = ComputeStatsUnsynchronized();
                    }
                }
                freeOnewaySpace = _freeOnewaySpace;
                capacity = _extents.Length;
            }
            if (status != ReserveStatus.NeedExtents)
            {
                break;
            }
            GrowPool(capacity, extentsNeeded);
        }

        if (status != ReserveStatus.Reserved)
        {
            if (throwIfFull)
            {
                ThrowRegionFull(status, padded, freeOnewaySpace, summary);
            }
            return false;
        }

        // Back the pages outside the allocator's lock, as binder does (a shared lock stays held: see the top of this
        // file). The reservation is already recorded, so a neighbour freed
        // meanwhile sees it and keeps a shared page Used, and nothing else can be placed over these bytes.
        int firstPage = (int)(offset / _pageSize);
        int endPage = (int)((offset + padded + _pageSize - 1) / _pageSize);
        try
        {
            _pages.UseRange(firstPage, endPage);
        }
        catch
        {
            // Binder drops the half-built allocation, which aborts the reservation and stops using its pages. Nothing
            // was written yet and some pages may not be backed, so the buffer is not cleared.
            using (EnterUnlessHeld(callerHoldsLock))
            {
                ReleaseUnsynchronized(FindLiveUnsynchronized(offset));
            }
            throw;
        }

        if (spamSuspect)
        {
            ReportOnewaySpam(senderPid, offset, spamBuffers, spamBytes, freeOnewaySpace);
        }
        return true;
    }

    private void ReportOnewaySpam(int senderPid, long offset, int buffers, long bytes, long freeOnewaySpace)
    {
        var args = new OnewaySpamSuspectedEventArgs(senderPid, offset, buffers, bytes, freeOnewaySpace);
        PageRangeLog.OnewaySpamSuspected(_logger, senderPid, buffers, bytes);
        try
        {
            OnewaySpamSuspected?.Invoke(this, args);
        }
        catch
        {
            // The caller never sees the offset, so the buffer would leak.
            Abort(offset);
            throw;
        }
    }

    /// <summary>Finds room for a buffer of <paramref name="size"/> padded bytes and records it as Reserved.</summary>
    private ReserveStatus PlaceUnsynchronized(long size, bool oneway, bool clearOnFree, int senderPid, out long offset, out int extentsNeeded)
    {
        offset = 0;
        extentsNeeded = 0;
        // Binder checks the quota before looking for space: a oneway message fails here even if a range would fit.
        if (oneway && _freeOnewaySpace < size)
        {
            return ReserveStatus.OnewayQuotaExhausted;
        }

        var buffer = new Extent
        {
            Size = size,
            State = ExtentState.Reserved,
            Oneway = oneway,
            ClearOnFree = clearOnFree,
            SenderPid = senderPid,
        };
        if (_mode == AllocatorMode.Empty || (_mode == AllocatorMode.Array && _arrayCount < TreeThreshold))
        {
            if (!TryPlaceInArrayUnsynchronized(ref buffer))
            {
                return ReserveStatus.NoSpace;
            }
            _mode = AllocatorMode.Array;
        }
        else
        {
            if (_mode == AllocatorMode.Array)
            {
                if (_poolCount < ConversionExtents)
                {
                    extentsNeeded = ConversionExtents;
                    return ReserveStatus.NeedExtents;
                }
                ConvertToTreeUnsynchronized();
            }
            else if (_poolCount < 1)
            {
                extentsNeeded = 1;
                return ReserveStatus.NeedExtents;
            }
            if (!TryPlaceInTreeUnsynchronized(ref buffer))
            {
                return ReserveStatus.NoSpace;
            }
        }

        offset = buffer.Offset;
        _bufferCount++;
        if (oneway)
        {
            _freeOnewaySpace -= size;
        }
        return ReserveStatus.Reserved;
    }

    /// <summary>
    /// Binder's C <c>debug_low_async_space_locked</c>, run after the new buffer is accounted: once less than a tenth
    /// of the area is left in the quota, a sender holding more than 50 live oneway buffers or more than a quarter of
    /// the area is reported, once, until a oneway reservation finds the quota healthy again.
    /// </summary>
    /// <remarks>
    /// We follow C's latch rather than Rust, which reports every qualifying reservation in tree mode and none in array
    /// mode: one report per episode is what a log line and an event need, and it does not depend on the mode.
    /// </remarks>
    private bool CheckOnewaySpamUnsynchronized(int senderPid, out int buffers, out long bytes)
    {
        buffers = 0;
        bytes = 0;
        if (_freeOnewaySpace >= DataSize / 10)
        {
            _onewaySpamDetected = false;
            return false;
        }
        for (int index = FirstLiveUnsynchronized(); index != Nil; index = NextLiveUnsynchronized(index))
        {
            ref Extent buffer = ref LiveUnsynchronized(index);
            if (buffer.Oneway && buffer.SenderPid == senderPid)
            {
                buffers++;
                bytes += buffer.Size;
            }
        }
        if ((buffers > SpamBufferThreshold || bytes > DataSize / 4) && !_onewaySpamDetected)
        {
            _onewaySpamDetected = true;
            _onewaySpamReports++;
            return true;
        }
        return false;
    }

    /// <summary>The index (array slot or pool extent) of the live buffer starting at <paramref name="offset"/>, or <see cref="Nil"/>.</summary>
    private int FindLiveUnsynchronized(long offset)
    {
        switch (_mode)
        {
            case AllocatorMode.Array:
                for (int i = 0; i < _arrayCount; i++)
                {
                    if (_array[i].Offset == offset)
                    {
                        return i;
                    }
                }
                return Nil;
            case AllocatorMode.Tree:
                var probe = new Extent { Offset = offset };
                return ExtentTree<ByOffsetOrder>.Find(_extents, _offsetRoot, in probe);
            default:
                return Nil;
        }
    }

    /// <summary>The live buffer at <paramref name="index"/>: an array slot in array mode, a pool extent in tree mode.</summary>
    private ref Extent LiveUnsynchronized(int index) =>
        ref _mode == AllocatorMode.Array ? ref _array[index] : ref _extents[index];

    /// <summary>The first live buffer in address order, or <see cref="Nil"/>.</summary>
    private int FirstLiveUnsynchronized() => _mode switch
    {
        AllocatorMode.Array => _arrayCount > 0 ? 0 : Nil,
        AllocatorMode.Tree => SkipFreeUnsynchronized(_first),
        _ => Nil,
    };

    /// <summary>The live buffer after <paramref name="index"/> in address order, or <see cref="Nil"/>.</summary>
    private int NextLiveUnsynchronized(int index) =>
        _mode == AllocatorMode.Array
            ? (index + 1 < _arrayCount ? index + 1 : Nil)
            : SkipFreeUnsynchronized(_extents[index].Next);

    private int SkipFreeUnsynchronized(int extent)
    {
        while (extent != Nil && !_extents[extent].IsLive)
        {
            extent = _extents[extent].Next;
        }
        return extent;
    }

    [DoesNotReturn]
    private static void ThrowSizeOverflow(long size) =>
        throw new ArgumentOutOfRangeException(nameof(size), size, "Rounding the size up to a multiple of 8 overflows.");

    [DoesNotReturn]
    private static void ThrowTooLarge(long size, long limit, string what) =>
        throw new MessageTooLargeException(size, limit, $"A message of {size} bytes can never fit: it is larger than {what}, {limit} bytes.");

    [DoesNotReturn]
    private void ThrowRegionFull(ReserveStatus status, long padded, long freeOnewaySpace, in BufferAllocatorStats summary)
    {
        string message = status == ReserveStatus.OnewayQuotaExhausted
            ? $"The oneway quota has {freeOnewaySpace} bytes left, fewer than the {padded} this oneway message needs."
            : $"No free range of the data area fits {padded} bytes now; {summary.Summary}.";
        PageRangeLog.AllocationFailed(_logger, status == ReserveStatus.OnewayQuotaExhausted ? "oneway" : "address", padded, summary.Summary);
        throw new RegionFullException(message);
    }

    /// <summary>Exits the lock it was given, if any, once.</summary>
    private ref struct Guard(ThinLock? entered)
    {
        public void Dispose() => entered?.Exit();
    }

    private enum ReserveStatus
    {
        Reserved,
        NoSpace,
        OnewayQuotaExhausted,
        NeedExtents,
    }
}
