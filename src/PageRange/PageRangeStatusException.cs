namespace PageRange;

/// <summary>
/// Thrown by a call's handler to fail the call with a status and a message: the caller gets a
/// <see cref="RemoteCallException"/> with both.
/// </summary>
/// <remarks>The message crosses to the peer: bounded to 512 characters, control characters removed.</remarks>
public class PageRangeStatusException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="status">The status the caller sees; not <see cref="CallStatus.Ok"/>.</param>
    /// <param name="message">The message the caller sees.</param>
    /// <param name="innerException">The error behind it, if any; never sent to the caller.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="status"/> is <see cref="CallStatus.Ok"/> or not a defined status.</exception>
    public PageRangeStatusException(CallStatus status, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        if (status == CallStatus.Ok || !Enum.IsDefined(status))
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "A failed call needs a status other than Ok.");
        }
        Status = status;
    }

    /// <summary>The status the caller sees.</summary>
    public CallStatus Status { get; }
}
