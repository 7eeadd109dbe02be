// To avoid deadlocks, locks are taken in the order:
//
//  1. mm lock     (_mmLock: serialises backing a page with reclaiming it)
//  2. range lock  (_lock: protects PageInfo.Backed of this range's pages)
//  3. LRU lock    (Shrinker.LruLock: protects the LRU links of every range sharing the shrinker)
//
// The shrinker walks the LRU holding the LRU lock, so it only *tries* the other two and skips on contention.

using System.Diagnostics;
using System.Numerics;
using PageRange.Threading;

namespace PageRange.Memory;

/// <summary>
/// Tracks each page of a region's data area as Free, Available or Used, backs pages when they are used and lets
/// the <see cref="Memory.Shrinker"/> reclaim them once they are not: the seed's <c>ShrinkablePageRange</c> over a memfd.
/// </summary>
/// <remarks>
/// <para>
/// Think of the pages as an array of "in use" booleans: <see cref="UseRange"/> sets a range to true and
/// <see cref="StopUsingRange"/> to false. A page that goes out of use is not freed at once; it joins the shrinker's
/// LRU and keeps its bytes until the shrinker reclaims it, after which it reads as zeros.
/// </para>
/// <para>
/// Races, as the seed allows them: <see cref="UseRange"/> and <see cref="StopUsingRange"/> may race with each other
/// (the page then ends up in either state) and with themselves (two <see cref="UseRange"/> calls on one page back it
/// once, and neither returns before it is backed). The read and write methods require every page they touch to be
/// Used for their whole duration: calling <see cref="StopUsingRange"/> on a page that is being read or written is a
/// bug in the caller.
/// </para>
/// <para>
/// The per-page bookkeeping grows with the pages actually used, not with the range: pages are tracked in chunks of
/// <see cref="ChunkPages"/>, each allocated the first time one of its pages is used and kept until the range is
/// disposed. The peer chooses how large a region it announces; it does not choose what that costs us until we write
/// into it (a 1 GiB range costs one reference per chunk, kilobytes, until then).
/// </para>
/// <para>
/// A difference from binder, where touching a reclaimed page raises SIGBUS: a reclaimed page reads as zeros through
/// any mapping of the region, and a fault on it, even a read fault in the peer's read-only mapping, makes the kernel
/// back it again (shmem allocates on every fault of a shared mapping). The page stays Free in these books, so the
/// region holds more than <c>(Used + Available) * PageSize</c> until the page is used and reclaimed again or the region
/// closes. A receiver reads only live buffers, which are Used, so only a misbehaving peer costs memory this way.
/// </para>
/// </remarks>
internal sealed unsafe partial class ShrinkablePageRange : IDisposable
{
    /// <summary>Pages per bookkeeping chunk: a chunk is allocated the first time one of its pages is used.</summary>
    internal const int ChunkPages = 1 << ChunkShift;

    private const int ChunkShift = 8;
    private const int ChunkMask = ChunkPages - 1;

    private readonly Shrinker _shrinker;
    private readonly SharedRegion _region;
    private readonly long _dataOffset;
    // The first page's address in the mapping, which the range's reference on the region keeps alive until its own
    // Dispose: one load per view of the pages instead of two dependent ones (the region, then its base), which were
    // ~6 ns of every small send in the call probe's profile.
    private readonly byte* _data;
    private readonly int _pageSize;

    // log2 of the page size (a power of two, as every page size the kernel has): Iterate, on every send's copy, finds
    // its pages with a shift instead of two 64-bit divisions (about 5% of Iterate's time each in the call probe).
    private readonly int _pageShift;
    private readonly int _pageCount;

    /// <summary>
    /// The page slots, <see cref="ChunkPages"/> per chunk; a chunk is <see langword="null"/> until one of its pages is
    /// first used, and then never changes (so its pages, which the shrinker's LRU links, stay the same objects).
    /// </summary>
    private readonly PageInfo[]?[] _chunks;

    /// <summary>Held while backing a page and while reclaiming one (the seed's <c>mm_lock</c>).</summary>
    private readonly ThinLock _mmLock = new();

    /// <summary>Protects <see cref="PageInfo.Backed"/> of this range's pages (the seed's spinlock).</summary>
    private readonly ThinLock _lock = new();

    private int _highWaterMark;
    private bool _disposed;

    /// <summary>Creates a range over <paramref name="pageCount"/> pages of <paramref name="region"/> starting at <paramref name="dataOffset"/>.</summary>
    /// <param name="region">The region; the range keeps it mapped until the range is disposed.</param>
    /// <param name="dataOffset">Byte offset of the first page in the region; a multiple of the page size.</param>
    /// <param name="pageCount">How many pages; at least one, and within the region.</param>
    /// <param name="shrinker">The shrinker whose LRU receives available pages. Defaults to <see cref="Shrinker.Shared"/>.</param>
    internal ShrinkablePageRange(SharedRegion region, long dataOffset, int pageCount, Shrinker? shrinker = null)
    {
        ArgumentNullException.ThrowIfNull(region);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageCount);
        ArgumentOutOfRangeException.ThrowIfNegative(dataOffset);
        _pageSize = SharedRegion.PageSize;
        if (!BitOperations.IsPow2(_pageSize))
        {
            throw new PlatformNotSupportedException($"The page size {_pageSize} is not a power of two.");
        }
        _pageShift = BitOperations.Log2((uint)_pageSize);
        if (dataOffset % _pageSize != 0)
        {
            throw new ArgumentException("The data offset must be a multiple of the page size.", nameof(dataOffset));
        }
        if (dataOffset + ((long)pageCount * _pageSize) > region.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(pageCount), "The pages do not fit in the region.");
        }

        _shrinker = shrinker ?? Shrinker.Shared;
        _region = region;
        _dataOffset = dataOffset;
        // SAFETY: dataOffset + the pages lie within the region's mapping (checked above); only an address is formed here.
        _data = region.BasePointer + dataOffset;
        _pageCount = pageCount;
        _chunks = new PageInfo[]?[(pageCount + ChunkMask) >> ChunkShift];
        region.AddRef();
        Pid = Environment.ProcessId;
    }

    /// <summary>The number of pages in the range.</summary>
    internal int PageCount => _pageCount;

    /// <summary>The number of bytes in the range.</summary>
    internal long ByteCount => (long)_pageCount * _pageSize;

    /// <summary>How many bookkeeping chunks have been allocated so far (each covers <see cref="ChunkPages"/> pages).</summary>
    internal int AllocatedChunks
    {
        get
        {
            int count = 0;
            for (int i = 0; i < _chunks.Length; i++)
            {
                if (Volatile.Read(ref _chunks[i]) is not null)
                {
                    count++;
                }
            }
            return count;
        }
    }

    /// <summary>The process that owns the range; debugging information only, as in the seed.</summary>
    internal int Pid { get; }

    /// <summary>The region the pages live in.</summary>
    internal SharedRegion Region => _region;

    /// <summary>The shrinker this range's available pages are queued on.</summary>
    internal Shrinker Shrinker => _shrinker;

    /// <summary>Makes sure pages <c>[start, end)</c> are backed and marks them Used.</summary>
    /// <remarks>
    /// Fast path: a backed page just leaves the LRU. Slow path: the page is backed with <c>fallocate</c> while the mm
    /// lock is held, so it never interleaves with the shrinker punching the same page. An empty or inverted range is
    /// a no-op; calling this on Used pages is idempotent.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="end"/> is beyond the range.</exception>
    /// <exception cref="BackingAllocationException">The kernel had no memory for a page. Pages before it are Used,
    /// the failing page and those after it are unchanged; the caller stops using what it asked for.</exception>
    internal void UseRange(int start, int end)
    {
        if (start >= end)
        {
            return;
        }
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(end, _pageCount);
        // Outside every lock: allocating may run the GC, which must not find the shrinker's locks held.
        EnsureChunks(start, end);

        _lock.Enter();
        try
        {
            ThrowIfDisposedUnsynchronized();
            for (int i = start; i < end; i++)
            {
                PageInfo page = PageAt(i);
                if (page.Backed)
                {
                    // We are going to use the page, so take it off the LRU so the shrinker will not free it. The
                    // shrinker cannot free it between the check and this call because we hold the range lock.
                    _shrinker.LruDel(page);
                }
                else
                {
                    // We have to back a new page: the slow path, which takes the mm lock, so drop the range lock.
                    _lock.Exit();
                    try
                    {
                        UsePageSlow(i);
                    }
                    finally
                    {
                        _lock.Enter();
                    }
                    ThrowIfDisposedUnsynchronized();
                }
            }
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>Backs page <paramref name="index"/> and marks it Used: the slow path of <see cref="UseRange"/>.</summary>
    private void UsePageSlow(int index)
    {
        PageInfo page = PageAt(index);
        _mmLock.Enter();
        try
        {
            _lock.Enter();
            try
            {
                ThrowIfDisposedUnsynchronized();
                // Another caller may have backed the page since we dropped the range lock. Pages only become
                // backed under the mm lock, which we hold, so after this check nobody else can back it.
                if (page.Backed)
                {
                    _shrinker.LruDel(page);
                    return;
                }
            }
            finally
            {
                _lock.Exit();
            }

            // fallocate turns "no memory" into ENOSPC/ENOMEM here instead of a SIGBUS on first touch.
            _region.Allocate(_dataOffset + ((long)index * _pageSize), _pageSize);

            _lock.Enter();
            try
            {
                page.Backed = true;
                if (index + 1 > _highWaterMark)
                {
                    _highWaterMark = index + 1;
                }
            }
            finally
            {
                _lock.Exit();
            }
        }
        finally
        {
            _mmLock.Exit();
        }
    }

    /// <summary>Marks the backed pages of <c>[start, end)</c> Available, queueing them on the shrinker's LRU in reverse order.</summary>
    /// <remarks>Never blocks on I/O and never allocates. Free pages are skipped; an empty or inverted range is a no-op.</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="end"/> is beyond the range.</exception>
    internal void StopUsingRange(int start, int end)
    {
        if (start >= end)
        {
            return;
        }
        ArgumentOutOfRangeException.ThrowIfNegative(start);

        _lock.Enter();
        try
        {
            if (_disposed)
            {
                return;
            }
            ArgumentOutOfRangeException.ThrowIfGreaterThan(end, _pageCount);
            for (int i = end - 1; i >= start; i--)
            {
                // A page of a chunk never allocated was never used, so it is Free and stays so.
                if (PageOrNull(i) is { Backed: true } page)
                {
                    _shrinker.LruAdd(page);
                }
            }
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>The state of page <paramref name="index"/> right now.</summary>
    internal PageState GetPageState(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _pageCount);
        _lock.Enter();
        try
        {
            return PageOrNull(index) is { } page ? StateOfUnsynchronized(page) : PageState.Free;
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>A consistent snapshot of the page counts per state, the high-water mark and the resident bytes.</summary>
    /// <remarks>
    /// The counts are taken together under the range lock. The resident bytes come from the kernel right after (the
    /// system call is made outside the lock so the shrinker is not made to skip); after <see cref="Dispose()"/> they are 0.
    /// </remarks>
    internal PageRangeStats GetStats()
    {
        int used = 0;
        int available = 0;
        int highWaterMark;
        bool disposed;
        _lock.Enter();
        try
        {
            foreach (PageInfo[]? chunk in _chunks)
            {
                if (chunk is null)
                {
                    continue;
                }
                foreach (PageInfo page in chunk)
                {
                    switch (StateOfUnsynchronized(page))
                    {
                        case PageState.Used:
                            used++;
                            break;
                        case PageState.Available:
                            available++;
                            break;
                        default:
                            break;
                    }
                }
            }
            highWaterMark = _highWaterMark;
            disposed = _disposed;
            if (!disposed)
            {
                // Our own reference may be dropped by a Dispose right after we release the lock: take another.
                _region.AddRef();
            }
        }
        finally
        {
            _lock.Exit();
        }

        long residentBytes = 0;
        if (!disposed)
        {
            try
            {
                residentBytes = _region.ResidentBytesCore;
            }
            finally
            {
                _region.ReleaseRef();
            }
        }
        return new PageRangeStats(used, available, _pageCount - used - available, highWaterMark, residentBytes);
    }

    /// <summary>
    /// Called by the shrinker with this range's mm lock held and the page already marked Free: gives the page's
    /// memory back to the kernel.
    /// </summary>
    internal void PunchPageUnsynchronized(int index)
    {
        Debug.Assert(_mmLock.IsHeldByCurrentThread, "The mm lock serialises punching with UsePageSlow.");
        _region.PunchHole(_dataOffset + ((long)index * _pageSize), _pageSize);
    }

    /// <summary>
    /// Called by the shrinker, with this range's mm lock held, when the kernel refused to punch page
    /// <paramref name="index"/>: its memory is still there, so it becomes Available again instead of Free.
    /// </summary>
    internal void RequeueAfterFailedPunchUnsynchronized(int index)
    {
        Debug.Assert(_mmLock.IsHeldByCurrentThread, "Only the shrinker, under the mm lock, marks a page backed outside UsePageSlow.");
        // Lock order mm -> range -> LRU: the shrinker dropped the LRU lock before punching.
        _lock.Enter();
        try
        {
            PageInfo page = PageAt(index);
            page.Backed = true;
            _shrinker.LruAdd(page);
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>The mm lock, for the shrinker's try-lock.</summary>
    internal ThinLock MmLock => _mmLock;

    /// <summary>The range lock, for the shrinker's try-lock.</summary>
    internal ThinLock RangeLock => _lock;

    /// <summary>
    /// Takes every page off the LRU under the mm lock, so that afterwards the shrinker never touches this range, and
    /// gives back every page the range backed.
    /// </summary>
    /// <remarks>
    /// The punch is what makes the memory go now rather than when the region's last mapping and descriptor do: the
    /// region may be the peer's, which can keep it open as long as it likes, while the pages we backed are charged
    /// to us. If the kernel refuses the punch the pages stay until the region closes; Dispose never throws for it.
    /// </remarks>
    public void Dispose() => Dispose(keepUsedPages: false);

    /// <summary>
    /// <see cref="Dispose()"/>, but with <paramref name="keepUsedPages"/> the pages a live buffer covers (Used) stay
    /// backed: on a graceful close the peer may still be reading transactions we published, and punching them would
    /// turn those payloads into zeros under its feet. Only Available pages are punched then; the Used ones go when the
    /// peer closes the region (at most what was in flight when we closed).
    /// </summary>
    /// <param name="keepUsedPages">Keep the pages of live buffers; false punches every page this range backed.</param>
    internal void Dispose(bool keepUsedPages)
    {
        // Made before the locks, as everything this class allocates (a collection under them stalls every thread
        // spinning for them): a close that keeps pages is rare, and its array is one byte a page.
        bool[]? keep = keepUsedPages ? new bool[_pageCount] : null;
        bool keptAny = false;
        // Taking the mm lock waits for a shrinker that is punching one of our pages right now (it holds the lock
        // across the punch), so the region is still mapped and open while it does.
        _mmLock.Enter();
        try
        {
            int highWaterMark;
            _lock.Enter();
            try
            {
                if (_disposed)
                {
                    return;
                }
                _disposed = true;
                highWaterMark = _highWaterMark;
                foreach (PageInfo[]? chunk in _chunks)
                {
                    if (chunk is null)
                    {
                        continue;
                    }
                    foreach (PageInfo page in chunk)
                    {
                        if (page.Backed)
                        {
                            // Used = backed and not on the LRU: read before LruDel makes every page look Used.
                            if (keep is not null && !page.IsQueued)
                            {
                                keep[page.Index] = true;
                                keptAny = true;
                            }
                            _shrinker.LruDel(page);
                        }
                    }
                }
            }
            finally
            {
                _lock.Exit();
            }
            if (!keptAny || keep is null)
            {
                PunchAllOnDispose(highWaterMark);
            }
            else
            {
                PunchAllButOnDispose(highWaterMark, keep);
            }
        }
        finally
        {
            _mmLock.Exit();
        }
        _region.ReleaseRef();
    }

    /// <summary>Whether the kernel refused the punch of <see cref="Dispose()"/> (the pages then stay until the region closes).</summary>
    internal bool DisposePunchFailed { get; private set; }

    /// <summary>
    /// Punches pages <c>[0, highWaterMark)</c>, every page this range ever backed, in one call: holes in between cost
    /// the kernel nothing. Called by <see cref="Dispose()"/> with the mm lock held and the range marked disposed, so no
    /// page is backed again meanwhile.
    /// </summary>
    private void PunchAllOnDispose(int highWaterMark)
    {
        Debug.Assert(_mmLock.IsHeldByCurrentThread, "Pages are backed only under the mm lock.");
        if (highWaterMark == 0)
        {
            return;
        }
        try
        {
            _region.PunchHole(_dataOffset, (long)highWaterMark * _pageSize);
        }
        catch (SystemCallException)
        {
            DisposePunchFailed = true;
            return;
        }
        _lock.Enter();
        try
        {
            foreach (PageInfo[]? chunk in _chunks)
            {
                if (chunk is null)
                {
                    continue;
                }
                foreach (PageInfo page in chunk)
                {
                    page.Backed = false;
                }
            }
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>
    /// Punches pages <c>[0, highWaterMark)</c> except those <paramref name="keep"/> marks, run by run. Called by
    /// <see cref="Dispose(bool)"/> under the mm lock with the range marked disposed, like <see cref="PunchAllOnDispose"/>.
    /// </summary>
    private void PunchAllButOnDispose(int highWaterMark, bool[] keep)
    {
        Debug.Assert(_mmLock.IsHeldByCurrentThread, "Pages are backed only under the mm lock.");
        int start = 0;
        while (start < highWaterMark)
        {
            if (keep[start])
            {
                start++;
                continue;
            }
            int end = start;
            while (end < highWaterMark && !keep[end])
            {
                end++;
            }
            try
            {
                _region.PunchHole(_dataOffset + ((long)start * _pageSize), (long)(end - start) * _pageSize);
            }
            catch (SystemCallException)
            {
                DisposePunchFailed = true;
                return;
            }
            _lock.Enter();
            try
            {
                for (int i = start; i < end; i++)
                {
                    if (PageOrNull(i) is { } page)
                    {
                        page.Backed = false;
                    }
                }
            }
            finally
            {
                _lock.Exit();
            }
            start = end;
        }
    }

    /// <summary>The slot of page <paramref name="index"/>, whose chunk <see cref="EnsureChunks"/> has allocated.</summary>
    private PageInfo PageAt(int index)
    {
        PageInfo[]? chunk = Volatile.Read(ref _chunks[index >> ChunkShift]);
        Debug.Assert(chunk is not null, "UseRange allocates the chunks of the pages it uses before it touches them.");
        return chunk[index & ChunkMask];
    }

    /// <summary>The slot of page <paramref name="index"/>, or <see langword="null"/> if no page of its chunk was ever used (so it is Free).</summary>
    private PageInfo? PageOrNull(int index) => Volatile.Read(ref _chunks[index >> ChunkShift])?[index & ChunkMask];

    /// <summary>Allocates the bookkeeping chunks of pages <c>[start, end)</c> that do not exist yet.</summary>
    /// <remarks>Called outside every lock; two callers may race to create one chunk, and the first to publish it wins.</remarks>
    private void EnsureChunks(int start, int end)
    {
        for (int c = start >> ChunkShift; c <= (end - 1) >> ChunkShift; c++)
        {
            if (Volatile.Read(ref _chunks[c]) is not null)
            {
                continue;
            }
            int first = c << ChunkShift;
            var chunk = new PageInfo[Math.Min(ChunkPages, _pageCount - first)];
            for (int i = 0; i < chunk.Length; i++)
            {
                chunk[i] = new PageInfo(this, first + i);
            }
            // Release: the slots are complete before another thread can see the chunk.
            Interlocked.CompareExchange(ref _chunks[c], chunk, null);
        }
    }

    private static PageState StateOfUnsynchronized(PageInfo page) =>
        !page.Backed ? PageState.Free : page.IsQueued ? PageState.Available : PageState.Used;

    private void ThrowIfDisposedUnsynchronized()
    {
        if (_disposed)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }
}
