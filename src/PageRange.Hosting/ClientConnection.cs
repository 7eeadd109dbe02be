using PageRange.Transport;

namespace PageRange.Hosting;

/// <summary>
/// A connection of a <see cref="PageRangeClient"/> with a count of its users: the client's own reference plus one per
/// call in progress. Whoever drops the count to zero closes it, so a connection that died is closed only after the
/// calls still waiting on it were failed by its reader (closing it first would leave them waiting for ever).
/// </summary>
internal sealed class ClientConnection(PageRangeConnection connection, long connectedTimestamp, int failedAttemptsBefore)
{
    private int _references = 1;

    public PageRangeConnection Connection { get; } = connection;

    /// <summary>When its handshake completed, on the client's <see cref="TimeProvider"/>: its loss counts as a failed
    /// attempt unless it lasted <see cref="PageRangeClientOptions.HealthyConnectionTime"/>.</summary>
    public long ConnectedTimestamp { get; } = connectedTimestamp;

    /// <summary>The failed attempts in a row before it; a loss that counts as a failure continues from there.</summary>
    public int FailedAttemptsBefore { get; } = failedAttemptsBefore;

    /// <summary>A call begins. One that begins after the count reached zero finds the connection dead or closed and fails at once.</summary>
    public void Enter() => Interlocked.Increment(ref _references);

    /// <summary>A call ended, or the client let go of the connection.</summary>
    /// <returns>Whether that was the last reference: the caller closes the connection.</returns>
    public bool Exit() => Interlocked.Decrement(ref _references) == 0;
}
