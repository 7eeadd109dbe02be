namespace PageRange;

/// <summary>
/// The peer received the call but failed it: its handler replied with an error status, threw, or disposed the call
/// without replying.
/// </summary>
/// <remarks>
/// <see cref="Exception.Message"/> is the peer's message: peer-supplied text, bounded to 512
/// characters with control characters removed before it reaches this exception.
/// </remarks>
public sealed class RemoteCallException : PageRangeException
{
    /// <summary>Creates the exception with the peer's explanation and <see cref="CallStatus.Unknown"/>.</summary>
    /// <param name="message">The peer's message.</param>
    public RemoteCallException(string message)
        : this(CallStatus.Unknown, message)
    {
    }

    /// <summary>Creates the exception with the peer's status and explanation.</summary>
    /// <param name="status">The status the peer failed the call with.</param>
    /// <param name="message">The peer's message (bounded and stripped of control characters here).</param>
    public RemoteCallException(CallStatus status, string message)
        : base(PeerText.Sanitize(message)) =>
        Status = status;

    /// <summary>The status the peer failed the call with.</summary>
    public CallStatus Status { get; }
}
