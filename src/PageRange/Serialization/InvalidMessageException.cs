namespace PageRange;

/// <summary>
/// A transaction's payload is not a valid message of the expected type. The error belongs to that transaction only:
/// the connection keeps working.
/// </summary>
public sealed class InvalidMessageException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    public InvalidMessageException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}
