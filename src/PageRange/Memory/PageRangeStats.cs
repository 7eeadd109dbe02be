namespace PageRange.Memory;

/// <summary>A snapshot of one page range (binder's <c>pages: active:lru:free</c> and <c>pages high watermark</c>).</summary>
/// <param name="Used">Pages covered by a live buffer.</param>
/// <param name="Available">Backed pages on the shrinker's LRU.</param>
/// <param name="Free">Pages without backing memory.</param>
/// <param name="HighWaterMark">One more than the highest page index ever backed.</param>
/// <param name="ResidentBytes">The region's backed bytes as the kernel counts them.</param>
public readonly record struct PageRangeStats(int Used, int Available, int Free, int HighWaterMark, long ResidentBytes)
{
    /// <inheritdoc/>
    public override string ToString() => $"pages: {Used}:{Available}:{Free}, pages high watermark: {HighWaterMark}, resident bytes: {ResidentBytes}";
}
