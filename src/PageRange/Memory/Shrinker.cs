// Lock order (shared with ShrinkablePageRange): mm lock -> range lock -> LRU lock.
// Scan holds the LRU lock while it walks, the reverse of that order, so it only *tries* a range's mm lock and
// range lock and skips the page when either is taken, by another thread or by its own.

using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PageRange.Diagnostics;
using PageRange.Threading;

namespace PageRange.Memory;

/// <summary>
/// Reclaims available pages of every page range in the process (the seed's <c>Shrinker</c> and its <c>list_lru</c>):
/// <see cref="Count"/> says how many pages could be freed, <see cref="Scan"/> frees up to that many.
/// </summary>
/// <remarks>
/// One shrinker serves the whole process (<see cref="Shared"/>), as binder's one global shrinker does. Pages join the
/// LRU's tail when they become Available and are reclaimed from its head, oldest first. Thread safety: every member
/// may be called from any thread, concurrently with the ranges using and releasing pages.
/// </remarks>
public sealed partial class Shrinker
{
    /// <summary>The most busy pages one scan skips in a row before it releases the LRU lock and takes it again.</summary>
    internal const int SkipBatch = 32;

    private readonly PageInfo _head = new(range: null, index: -1);
    private long _count;

    /// <summary>The number of the latest scan, stamped on every page it visits. Written under the LRU lock.</summary>
    private long _scanEpoch;

    /// <summary>How often a scan let go of the LRU lock after a batch of skips, for tests.</summary>
    private long _skipBatchReleases;
    private long _pagesScanned;
    private long _pagesFreed;
    private long _pagesSkipped;
    private long _punchFailures;
    private MemoryPressureMonitor? _monitor;
    private ILogger _logger = NullLogger.Instance;

    internal Shrinker()
    {
        _head.Next = _head;
        _head.Prev = _head;
    }

    /// <summary>The process's shrinker, shared by every page range.</summary>
    public static Shrinker Shared { get; } = new();

    /// <summary>Protects the LRU links; the last lock of the lock order.</summary>
    internal ThinLock LruLock { get; } = new();

    /// <summary>Pages the shrinker has looked at in <see cref="Scan"/>.</summary>
    public long PagesScanned => Interlocked.Read(ref _pagesScanned);

    /// <summary>Pages the shrinker has given back to the kernel.</summary>
    public long PagesFreed => Interlocked.Read(ref _pagesFreed);

    /// <summary>Pages the shrinker skipped because their range was busy.</summary>
    public long PagesSkipped => Interlocked.Read(ref _pagesSkipped);

    /// <summary>Punches the kernel refused; each such page went back on the LRU as Available, since its memory is still there.</summary>
    public long PunchFailures => Interlocked.Read(ref _punchFailures);

    /// <summary>The memory-pressure monitor driving this shrinker, or <see langword="null"/> when none runs.</summary>
    public MemoryPressureMonitor? Monitor => Volatile.Read(ref _monitor);

    /// <summary>
    /// Starts a <see cref="MemoryPressureMonitor"/> that makes this shrinker reclaim pages under memory pressure, and,
    /// when <see cref="ShrinkerOptions.IdleAge"/> is set, pages idle for that long. Dispose it to stop it.
    /// </summary>
    /// <param name="options">Thresholds and polling period; copied. Defaults to <see cref="ShrinkerOptions"/>'s defaults.</param>
    /// <returns>The running monitor; when <see cref="ShrinkerOptions.Enabled"/> is false, one that never polls.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="InvalidOperationException">A monitor already runs for this shrinker (see <see cref="Monitor"/>).</exception>
    /// <remarks>One monitor per shrinker: the process-wide <see cref="Shared"/> shrinker wants one process-wide monitor.</remarks>
    public MemoryPressureMonitor StartMonitor(ShrinkerOptions? options = null) =>
        StartMonitorCore(options, new MemoryPressureReader().Read);

    /// <summary><see cref="StartMonitor(ShrinkerOptions?)"/> with the signals read by <paramref name="read"/>.</summary>
    internal MemoryPressureMonitor StartMonitorCore(ShrinkerOptions? options, Func<MemoryPressureReading> read)
    {
        ShrinkerOptions copy = (options ?? new ShrinkerOptions()).Clone();
        copy.Validate();
        UseLoggerFactory(copy.LoggerFactory);
        var monitor = new MemoryPressureMonitor(this, copy, read);
        if (!copy.Enabled)
        {
            return monitor;
        }
        if (Interlocked.CompareExchange(ref _monitor, monitor, null) is not null)
        {
            throw new InvalidOperationException("A memory-pressure monitor already runs for this shrinker; dispose it before starting another.");
        }
        monitor.Start();
        return monitor;
    }

    /// <summary>Where passes are logged (<see cref="PageRangeLogEvents.ShrinkerPass"/>); the no-op logger until a factory is given.</summary>
    internal ILogger Logger => Volatile.Read(ref _logger);

    /// <summary>
    /// Logs this shrinker's passes to <paramref name="factory"/> unless a logger was given before: the shrinker serves the
    /// whole process, so the first factory wins.
    /// </summary>
    internal void UseLoggerFactory(ILoggerFactory? factory)
    {
        if (factory is not null && Volatile.Read(ref _logger) == NullLogger.Instance)
        {
            Interlocked.CompareExchange(ref _logger, PageRangeLog.CreateLogger(factory, PageRangeLogEvents.MemoryCategory), NullLogger.Instance);
        }
    }

    /// <summary>Forgets <paramref name="monitor"/> if it is the running one.</summary>
    internal void OnMonitorDisposed(MemoryPressureMonitor monitor) => Interlocked.CompareExchange(ref _monitor, null, monitor);

    /// <summary>The number of Available pages: what <see cref="Scan"/> could free now (<c>list_lru_count</c>).</summary>
    /// <returns>The length of the LRU.</returns>
    public long Count() => Interlocked.Read(ref _count);

    /// <summary>Reclaims up to <paramref name="pagesToScan"/> Available pages, oldest first.</summary>
    /// <param name="pagesToScan">How many LRU entries to look at (the kernel's <c>nr_to_scan</c>); at least zero.</param>
    /// <returns>How many pages were given back to the kernel.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="pagesToScan"/> is negative.</exception>
    public long Scan(long pagesToScan)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(pagesToScan);
        return ScanCore(pagesToScan, olderThanTicks: long.MaxValue);
    }

    /// <summary>Reclaims every Available page that has been on the LRU for at least <paramref name="age"/>.</summary>
    /// <returns>How many pages were given back to the kernel.</returns>
    public long ScanIdle(TimeSpan age)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(age, TimeSpan.Zero);
        return ScanCore(Count(), Environment.TickCount64 - (long)age.TotalMilliseconds);
    }

    /// <summary>
    /// The seed's <c>rust_shrink_scan</c> + <c>list_lru_walk</c>: walk from the head holding the LRU lock and hand each
    /// page to <see cref="FreePageLruLocked"/>. A skipped page is rotated to the tail (<c>LRU_ROTATE</c>); a freed
    /// page, or one whose punch failed, means the LRU lock was dropped (<c>LRU_REMOVED_RETRY</c>). Either way the
    /// walk goes on from the head, where the oldest page not yet visited now is.
    /// </summary>
    /// <remarks>
    /// Bounded three ways, so no page and no peer can make a scan run away: at most
    /// min(<paramref name="pagesToScan"/>, the LRU's length when the scan began) visits; each page is visited at most
    /// once (stamped with this scan's epoch, and a stamped page back at the head means every older page has been
    /// seen, so a page whose punch keeps failing is met once and ends the walk); and the LRU lock is released and
    /// re-taken after every <see cref="SkipBatch"/> consecutive skips, so a long run of busy pages does not keep
    /// every <see cref="ShrinkablePageRange.UseRange"/> and <see cref="ShrinkablePageRange.StopUsingRange"/> waiting.
    /// </remarks>
    private long ScanCore(long pagesToScan, long olderThanTicks)
    {
        long walked = 0;
        long freed = 0;
        long skipped = 0;
        int skippedInBatch = 0;
        LruLock.Enter();
        try
        {
            long epoch = ++_scanEpoch;
            long limit = Math.Min(pagesToScan, _count);
            while (walked < limit)
            {
                PageInfo page = _head.Next!;
                if (page == _head || page.ScanEpoch == epoch)
                {
                    // Empty, or every page queued before this one has been visited: the rest were skipped, requeued
                    // after a failed punch, or queued after the scan began.
                    break;
                }
                if (page.QueuedAt > olderThanTicks)
                {
                    // The LRU is in queueing order but for pages a scan skipped and rotated, which keep their stamp (a
                    // skip is no use): such a page behind this one is older, and comes up once the pages before it
                    // age, which is sooner than a re-stamped page would have.
                    break;
                }
                walked++;
                page.ScanEpoch = epoch;
                switch (FreePageLruLocked(page))
                {
                    case FreePageResult.Skipped:
                        skipped++;
                        RotateToTailUnsynchronized(page);
                        if (++skippedInBatch == SkipBatch)
                        {
                            // Let the ranges' UseRange and StopUsingRange in between: they may be what keeps us skipping.
                            skippedInBatch = 0;
                            Interlocked.Increment(ref _skipBatchReleases);
                            LruLock.YieldToWaiters();
                        }
                        break;
                    case FreePageResult.Freed:
                        freed++;
                        skippedInBatch = 0;
                        break;
                    default:
                        skippedInBatch = 0;
                        break;
                }
            }
        }
        finally
        {
            LruLock.Exit();
            Interlocked.Add(ref _pagesScanned, walked);
            Interlocked.Add(ref _pagesFreed, freed);
            Interlocked.Add(ref _pagesSkipped, skipped);
        }
        if (walked > 0)
        {
            // After the LRU lock is released: a logger may take its own locks or block on I/O.
            PageRangeLog.ShrinkerPass(Logger, walked, freed, skipped);
        }
        return freed;
    }

    /// <summary>
    /// The seed's <c>rust_shrink_free_page</c>, entered and left with the LRU lock held: try the range's mm lock and
    /// range lock (skip if either is busy); isolate the page and mark it Free; drop the range lock and the LRU lock;
    /// punch the hole while still holding the mm lock; drop it and re-take the LRU lock.
    /// </summary>
    private FreePageResult FreePageLruLocked(PageInfo page)
    {
        Debug.Assert(LruLock.IsHeldByCurrentThread, "The walk holds the LRU lock.");
        // The back-pointer never changes, and a queued page's range is not disposed: Dispose dequeues every page
        // under the LRU lock, which we hold.
        ShrinkablePageRange range = page.Range!;
        // Not re-entrant tries, as the seed's try_lock: a scan run by a thread inside one of this range's sections (a
        // caller holding its mm lock or range lock) skips the page rather than change the range under that section.
        if (!range.MmLock.TryEnterNonRecursive())
        {
            return FreePageResult.Skipped;
        }
        if (!range.RangeLock.TryEnterNonRecursive())
        {
            range.MmLock.Exit();
            return FreePageResult.Skipped;
        }

        // Mark the page Free before its memory is gone. UsePageSlow cannot back it again until we release the mm
        // lock, which we hold across the punch below, so no allocation of this page interleaves with the punch.
        UnlinkUnsynchronized(page);
        page.Backed = false;
        int index = page.Index;
        range.RangeLock.Exit();

        // From here on we touch only the region, through the range's reference, which Dispose cannot drop while we
        // hold the mm lock: the seed's "don't access this PageInfo or ShrinkablePageRange again" but for mm_lock.
        LruLock.Exit();
        FreePageResult result = FreePageResult.Freed;
        try
        {
            range.PunchPageUnsynchronized(index);
        }
        catch (SystemCallException)
        {
            // The memory is still there: put the page back as Available rather than calling it Free, so that the
            // books match ResidentBytes and a later use does not find old bytes in a "fresh" page.
            Interlocked.Increment(ref _punchFailures);
            range.RequeueAfterFailedPunchUnsynchronized(index);
            result = FreePageResult.PunchFailed;
        }
        finally
        {
            range.MmLock.Exit();
            LruLock.Enter();
        }
        return result;
    }

    /// <summary>Queues <paramref name="page"/> at the LRU's tail unless it is queued already (<c>list_lru_add</c>).</summary>
    /// <remarks>Safety: the caller holds the page's range lock.</remarks>
    internal void LruAdd(PageInfo page)
    {
        LruLock.Enter();
        try
        {
            if (page.IsQueued)
            {
                return;
            }
            page.QueuedAt = Environment.TickCount64;
            PageInfo tail = _head.Prev!;
            page.Prev = tail;
            page.Next = _head;
            tail.Next = page;
            _head.Prev = page;
            _count++;
        }
        finally
        {
            LruLock.Exit();
        }
    }

    /// <summary>Removes <paramref name="page"/> from the LRU if it is queued (<c>list_lru_del</c>).</summary>
    /// <remarks>Safety: the caller holds the page's range lock.</remarks>
    internal void LruDel(PageInfo page)
    {
        LruLock.Enter();
        try
        {
            if (page.IsQueued)
            {
                UnlinkUnsynchronized(page);
            }
        }
        finally
        {
            LruLock.Exit();
        }
    }

    private void UnlinkUnsynchronized(PageInfo page)
    {
        Debug.Assert(LruLock.IsHeldByCurrentThread, "LRU links change only under the LRU lock.");
        page.Prev!.Next = page.Next;
        page.Next!.Prev = page.Prev;
        page.Prev = null;
        page.Next = null;
        _count--;
    }

    /// <summary>Moves a queued page to the tail (the kernel's <c>LRU_ROTATE</c>); it keeps its queueing time, so a skip does
    /// not restart its idle age (a page idle for ten minutes and skipped once waited a whole idle age again).</summary>
    /// <remarks>
    /// The page's <see cref="PageInfo.Next"/> never passes through <see langword="null"/> here: readers that hold only
    /// the page's range lock (Iterate, GetStats) read <see cref="PageInfo.IsQueued"/>, and a rotation must not make an
    /// Available page look Used to them for an instant.
    /// </remarks>
    private void RotateToTailUnsynchronized(PageInfo page)
    {
        Debug.Assert(LruLock.IsHeldByCurrentThread, "LRU links change only under the LRU lock.");
        if (page.Next == _head)
        {
            return;
        }
        page.Prev!.Next = page.Next;
        page.Next!.Prev = page.Prev;
        PageInfo tail = _head.Prev!;
        page.Prev = tail;
        tail.Next = page;
        page.Next = _head;
        _head.Prev = page;
    }

    private enum FreePageResult
    {
        /// <summary>The page's range was busy (<c>LRU_SKIP</c>).</summary>
        Skipped,

        /// <summary>The page was reclaimed; the LRU lock was dropped meanwhile (<c>LRU_REMOVED_RETRY</c>).</summary>
        Freed,

        /// <summary>The kernel refused the punch; the page was queued again; the LRU lock was dropped meanwhile.</summary>
        PunchFailed,
    }
}
