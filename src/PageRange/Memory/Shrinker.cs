// Lock order (shared with ShrinkablePageRange): mm lock -> range lock -> LRU lock.
// Scan holds the LRU lock while it walks, the reverse of that order, so it only *tries* a range's mm lock and
// range lock and skips the page when either is taken.

using System.Diagnostics;

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
public sealed class Shrinker
{
    private readonly PageInfo _head = new(range: null, index: -1);
    private long _count;
    private long _pagesScanned;
    private long _pagesFreed;
    private long _pagesSkipped;
    private long _punchFailures;

    internal Shrinker()
    {
        _head.Next = _head;
        _head.Prev = _head;
    }

    /// <summary>The process's shrinker, shared by every page range.</summary>
    public static Shrinker Shared { get; } = new();

    /// <summary>Protects the LRU links; the last lock of the lock order.</summary>
    internal Lock LruLock { get; } = new();

    /// <summary>Pages the shrinker has looked at in <see cref="Scan"/>.</summary>
    public long PagesScanned => Interlocked.Read(ref _pagesScanned);

    /// <summary>Pages the shrinker has given back to the kernel.</summary>
    public long PagesFreed => Interlocked.Read(ref _pagesFreed);

    /// <summary>Pages the shrinker skipped because their range was busy.</summary>
    public long PagesSkipped => Interlocked.Read(ref _pagesSkipped);

    /// <summary>Punches the kernel refused; the page was marked Free anyway and its memory stays until the region closes.</summary>
    public long PunchFailures => Interlocked.Read(ref _punchFailures);

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
    /// The seed's <c>rust_shrink_scan</c> + <c>list_lru_walk</c> + <c>rust_shrink_free_page</c>: walk from the head
    /// holding the LRU lock; for each page try the mm lock and the range lock (skip and rotate it to the tail if
    /// either is busy); else isolate it, mark it Free, drop the range and LRU locks, punch the hole while still
    /// holding the mm lock, and re-take the LRU lock to go on from the head.
    /// </summary>
    private long ScanCore(long pagesToScan, long olderThanTicks)
    {
        long walked = 0;
        long freed = 0;
        long skipped = 0;
        LruLock.Enter();
        try
        {
            PageInfo? page = _head.Next;
            while (walked < pagesToScan && page != _head && page is not null)
            {
                if (page.QueuedAt > olderThanTicks)
                {
                    // The LRU is ordered by queueing time, so everything after this page is younger still.
                    break;
                }
                walked++;
                ShrinkablePageRange range = page.Range!;
                PageInfo next = page.Next!;

                if (!range.MmLock.TryEnter())
                {
                    skipped++;
                    RotateToTailUnsynchronized(page);
                    page = next;
                    continue;
                }
                if (!range.RangeLock.TryEnter())
                {
                    range.MmLock.Exit();
                    skipped++;
                    RotateToTailUnsynchronized(page);
                    page = next;
                    continue;
                }

                // Isolate the page and mark it Free. UsePageSlow cannot back it again until we release the mm lock,
                // which we hold across the punch below.
                UnlinkUnsynchronized(page);
                page.Backed = false;
                int index = page.Index;
                range.RangeLock.Exit();

                // From here on we touch neither the page nor the range's state, only the region (kept open by the
                // range's reference, which Dispose cannot drop while we hold the mm lock).
                LruLock.Exit();
                try
                {
                    range.PunchPageUnsynchronized(index);
                    freed++;
                }
                catch (SystemCallException)
                {
                    // The page is Free in our books either way; its memory comes back when the region closes.
                    Interlocked.Increment(ref _punchFailures);
                }
                finally
                {
                    range.MmLock.Exit();
                    LruLock.Enter();
                }
                // We dropped the LRU lock, so the list may have changed: restart from the head (LRU_REMOVED_RETRY).
                page = _head.Next;
            }
        }
        finally
        {
            LruLock.Exit();
            Interlocked.Add(ref _pagesScanned, walked);
            Interlocked.Add(ref _pagesFreed, freed);
            Interlocked.Add(ref _pagesSkipped, skipped);
        }
        return freed;
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

    private void RotateToTailUnsynchronized(PageInfo page)
    {
        if (page.Next == _head)
        {
            return;
        }
        UnlinkUnsynchronized(page);
        PageInfo tail = _head.Prev!;
        page.Prev = tail;
        page.Next = _head;
        tail.Next = page;
        _head.Prev = page;
        _count++;
    }
}
