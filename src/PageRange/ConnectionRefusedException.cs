namespace PageRange;

/// <summary>
/// A connection was refused during its handshake: the peer's uid is not allowed, its protocol version differs, or
/// the region it offered is invalid. The message says which side refused and why.
/// </summary>
/// <remarks>
/// Both sides learn of a refusal, but only the refusing side learns why: it raises this exception with the reason
/// (<see cref="RefusedByPeer"/> is <see langword="false"/>; a listener reports it through
/// <c>PageRangeListener.HandshakeFailed</c> and keeps accepting), while the refused side is only told that it was
/// refused (<see langword="true"/>), because the reason may name the refusing side's limits and configuration.
/// </remarks>
public sealed class ConnectionRefusedException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What was refused and why.</param>
    /// <param name="refusedByPeer"><see langword="true"/> if the other side refused this one.</param>
    /// <param name="innerException">The validation error behind the refusal, if any.</param>
    public ConnectionRefusedException(string message, bool refusedByPeer, Exception? innerException = null)
        : base(message, innerException) =>
        RefusedByPeer = refusedByPeer;

    /// <summary><see langword="true"/> if the peer refused this side; <see langword="false"/> if this side refused the peer.</summary>
    public bool RefusedByPeer { get; }
}
