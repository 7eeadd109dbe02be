namespace PageRange;

/// <summary>
/// The peer wrote something invalid into shared memory or onto the control socket (a bad offset, length,
/// record kind or version). The connection is closed; the process and other connections keep running.
/// </summary>
public sealed class ProtocolViolationException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public ProtocolViolationException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
