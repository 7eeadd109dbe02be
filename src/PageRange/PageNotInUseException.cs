namespace PageRange;

/// <summary>
/// A read or write touched a page of a page range that is not in the Used state. Writing there would
/// silently re-back a page behind the shrinker's back, so it is refused; it is a bug in the caller.
/// </summary>
public sealed class PageNotInUseException : PageRangeException
{
    /// <summary>Creates the exception for the page at <paramref name="pageIndex"/>.</summary>
    public PageNotInUseException(int pageIndex)
        : base($"Page {pageIndex} of the page range is not in use; only Used pages may be read or written.") =>
        PageIndex = pageIndex;

    /// <summary>The index of the offending page within the range.</summary>
    public int PageIndex { get; }
}
