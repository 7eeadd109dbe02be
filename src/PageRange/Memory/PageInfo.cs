namespace PageRange.Memory;

/// <summary>
/// The bookkeeping of one page slot, and its link in the shrinker's LRU (the seed's <c>PageInfo</c>).
/// </summary>
/// <remarks>
/// States: Free (<see cref="Backed"/> false, not linked); Available (backed, linked); Used (backed, not linked).
/// <see cref="Backed"/> is written under the owning range's lock, and set to true only while the range's mm lock
/// is also held. <see cref="Prev"/>/<see cref="Next"/> are written only under the shrinker's LRU lock.
/// Every slot is allocated once, with its range's chunk, the first time a page of that chunk is used; from then on
/// moving pages between states never allocates.
/// </remarks>
internal sealed class PageInfo
{
    internal PageInfo(ShrinkablePageRange? range, int index)
    {
        Range = range;
        Index = index;
    }

    /// <summary>The range this slot belongs to; <see langword="null"/> only for the LRU's sentinel. Immutable.</summary>
    internal ShrinkablePageRange? Range { get; }

    /// <summary>The slot's index within its range. Immutable.</summary>
    internal int Index { get; }

    /// <summary>Whether the memfd has backing memory for this page (the seed's <c>page.is_some()</c>).</summary>
    internal bool Backed;

    /// <summary>The previous entry of the LRU, or <see langword="null"/> when not queued.</summary>
    internal PageInfo? Prev;

    /// <summary>The next entry of the LRU, or <see langword="null"/> when not queued.</summary>
    internal PageInfo? Next;

    /// <summary><see cref="Environment.TickCount64"/> when the page was last queued on the LRU (a rotation keeps it), for
    /// idle-age reclaim.</summary>
    internal long QueuedAt;

    /// <summary>The number of the last <see cref="Shrinker.Scan"/> that visited this page: one scan visits a page once.</summary>
    /// <remarks>Written only under the shrinker's LRU lock.</remarks>
    internal long ScanEpoch;

    internal bool IsQueued => Next is not null;
}
