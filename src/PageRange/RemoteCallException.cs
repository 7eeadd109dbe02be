namespace PageRange;

/// <summary>The peer received the call but its handler failed or disposed the call without replying.</summary>
public sealed class RemoteCallException : PageRangeException
{
    /// <summary>Creates the exception with the peer's explanation.</summary>
    public RemoteCallException(string message)
        : base(message)
    {
    }
}
