namespace PageRange.Memory;

/// <summary>Read-only views of the LRU for tests.</summary>
public sealed partial class Shrinker
{
    /// <summary>How often a scan released and re-took the LRU lock after <see cref="SkipBatch"/> skips in a row.</summary>
    internal long SkipBatchReleases => Interlocked.Read(ref _skipBatchReleases);

    /// <summary>
    /// Walks the LRU under its lock, checks every link and that every entry is a backed page, and returns how many
    /// entries each range has on it. Throws <see cref="InvalidOperationException"/> when the list is corrupt or its
    /// length differs from <see cref="Count"/>.
    /// </summary>
    internal Dictionary<ShrinkablePageRange, int> WalkLru()
    {
        var perRange = new Dictionary<ShrinkablePageRange, int>(ReferenceEqualityComparer.Instance);
        LruLock.Enter();
        try
        {
            long length = 0;
            PageInfo previous = _head;
            for (PageInfo? page = _head.Next; page != _head; page = page.Next)
            {
                if (page is null || page.Prev != previous || page.Range is null)
                {
                    throw new InvalidOperationException($"The LRU is corrupt after {length} entries.");
                }
                if (!page.Backed)
                {
                    throw new InvalidOperationException($"Page {page.Index} is on the LRU but Free.");
                }
                length++;
                perRange[page.Range] = perRange.GetValueOrDefault(page.Range) + 1;
                previous = page;
            }
            if (_head.Prev != previous || length != _count)
            {
                throw new InvalidOperationException($"The LRU holds {length} entries but Count says {_count}.");
            }
        }
        finally
        {
            LruLock.Exit();
        }
        return perRange;
    }
}
