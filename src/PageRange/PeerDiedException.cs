namespace PageRange;

/// <summary>The peer process is gone (binder's BR_DEAD_REPLY): pending and later calls on the connection fail with this.</summary>
public sealed class PeerDiedException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public PeerDiedException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
