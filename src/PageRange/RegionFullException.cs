namespace PageRange;

/// <summary>No free range of the receiver's region fits the message now (binder's ENOSPC); it may fit once buffers are freed.</summary>
public sealed class RegionFullException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public RegionFullException(string message)
        : base(message)
    {
    }
}
