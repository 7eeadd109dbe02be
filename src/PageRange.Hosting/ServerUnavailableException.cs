namespace PageRange.Hosting;

/// <summary>
/// A <see cref="PageRangeClient"/> has no connection to its server now: the server is not running, refused the
/// connection, or was lost (died, restarted, shut down). The client connects again on a later use; the message and
/// <see cref="RetryAt"/> say when.
/// </summary>
/// <remarks>
/// Thrown at once during the backoff after a failed attempt; a use that started an attempt (or joined one) throws it when
/// that attempt fails, within the connection's connect timeout. A call that was in flight when the connection was lost
/// fails with this too, with the <see cref="PeerDiedException"/> as <see cref="Exception.InnerException"/>: the server
/// may have run it.
/// </remarks>
public sealed class ServerUnavailableException : PageRangeException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="serverName">The server the client connects to.</param>
    /// <param name="clientName">The client's name.</param>
    /// <param name="retryAt">When the client tries to connect again: now or later.</param>
    /// <param name="failedAttempts">How many attempts to connect failed in a row so far.</param>
    /// <param name="innerException">Why: the connect error or the connection's death.</param>
    public ServerUnavailableException(
        string message, string serverName, string clientName, DateTimeOffset retryAt, int failedAttempts, Exception? innerException)
        : base(message, innerException)
    {
        ServerName = serverName;
        ClientName = clientName;
        RetryAt = retryAt;
        FailedAttempts = failedAttempts;
    }

    /// <summary>The server the client connects to.</summary>
    public string ServerName { get; }

    /// <summary>The client's name (its key in the service collection).</summary>
    public string ClientName { get; }

    /// <summary>When the client tries to connect again, on the first use from then on.</summary>
    public DateTimeOffset RetryAt { get; }

    /// <summary>How many attempts to connect failed in a row so far (0: the connection was just lost).</summary>
    public int FailedAttempts { get; }
}
