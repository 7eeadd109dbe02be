namespace PageRange.Server;

/// <summary>A client's connection ended; the server goes on serving the others.</summary>
public sealed class ClientDisconnectedEventArgs : EventArgs
{
    internal ClientDisconnectedEventArgs(ClientInfo client, ClientDisconnectReason reason, Exception? exception, long calls, TimeSpan duration)
    {
        Client = client;
        Reason = reason;
        Exception = exception;
        Calls = calls;
        Duration = duration;
    }

    /// <summary>The client.</summary>
    public ClientInfo Client { get; }

    /// <summary>Why it ended.</summary>
    public ClientDisconnectReason Reason { get; }

    /// <summary>
    /// What ended it, when something did: the <see cref="PeerDiedException"/> or <see cref="ProtocolViolationException"/>
    /// the connection reported, or the unexpected error.
    /// </summary>
    public Exception? Exception { get; }

    /// <summary>How many calls and oneway messages of this client the server handled.</summary>
    public long Calls { get; }

    /// <summary>How long the client was connected.</summary>
    public TimeSpan Duration { get; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Client} disconnected after {Duration.TotalSeconds:F1} s and {Calls} calls: {Reason}{(Exception is null ? "" : $" ({Exception.Message})")}";
}
