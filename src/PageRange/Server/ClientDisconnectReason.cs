namespace PageRange.Server;

/// <summary>Why a client's connection ended.</summary>
public enum ClientDisconnectReason
{
    /// <summary>The client closed its connection, exited or was killed.</summary>
    PeerClosed,

    /// <summary>The client wrote something invalid into shared memory or onto its control socket; only its connection closed.</summary>
    ProtocolViolation,

    /// <summary>The server is stopping and closed the connection, telling the client why.</summary>
    ServerStopping,

    /// <summary>Anything else confined to that one connection (an unexpected error while serving it).</summary>
    Failed,

    /// <summary>
    /// The client stopped reading its replies: a reply found no room in its region within
    /// <see cref="PageRangeServerOptions.ReplyRoomTimeout"/>, so the server closed the connection rather than hold a
    /// worker for it.
    /// </summary>
    StoppedReading,
}
