namespace PageRange;

/// <summary>
/// The kernel could not back a page of a region with memory (ENOMEM or ENOSPC from <c>fallocate</c>).
/// Raised instead of the SIGBUS a touch of the page would otherwise cause; the operation that needed the
/// page was rolled back.
/// </summary>
public sealed class BackingAllocationException : SystemCallException
{
    /// <summary>Creates the exception for a failed allocation of backing memory.</summary>
    public BackingAllocationException(string systemCall, int errno, string message)
        : base(systemCall, errno, message)
    {
    }
}
