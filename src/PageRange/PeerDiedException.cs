namespace PageRange;

/// <summary>The peer process is gone (binder's BR_DEAD_REPLY): pending and later calls on the connection fail with this.</summary>
public sealed class PeerDiedException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public PeerDiedException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a peer that closed the connection on purpose and said why.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The error behind it, if any.</param>
    /// <param name="peerReason">The reason the peer gave, already bounded and stripped of control characters.</param>
    public PeerDiedException(string message, Exception? innerException, string? peerReason)
        : base(message, innerException) =>
        PeerReason = peerReason;

    /// <summary>
    /// The reason the peer gave when it closed the connection on purpose (a server says "the server is shutting
    /// down"); <see langword="null"/> when it just went away (exited, crashed, closed without a word).
    /// </summary>
    /// <remarks>Peer-supplied text: bounded to 512 characters, control characters removed.</remarks>
    public string? PeerReason { get; }
}
