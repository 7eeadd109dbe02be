namespace PageRange.Memory;

/// <summary>The state of one page of a <see cref="ShrinkablePageRange"/>, as in the seed.</summary>
public enum PageState
{
    /// <summary>No backing memory (a hole in the memfd); not on the shrinker's LRU.</summary>
    Free,

    /// <summary>Backed and on the shrinker's LRU: nothing uses it and the shrinker may reclaim it.</summary>
    Available,

    /// <summary>Backed and not on the LRU: a live buffer covers it.</summary>
    Used,
}
