namespace PageRange.Transport;

/// <summary>What a connection needs from its control socket once the handshake is done.</summary>
internal interface IControlLink : IDisposable
{
    /// <summary>The peer's process id, from <c>SO_PEERCRED</c>.</summary>
    int PeerPid { get; }

    /// <summary>The peer's user id, from <c>SO_PEERCRED</c>.</summary>
    int PeerUid { get; }

    /// <summary>The peer's group id, from <c>SO_PEERCRED</c>.</summary>
    int PeerGid { get; }

    /// <summary>
    /// Starts watching the socket: <paramref name="onPeerDied"/> runs once when it ends (the death notification),
    /// <paramref name="onCancelRequested"/> whenever the peer cancels a call it made to us.
    /// </summary>
    void Start(Action<Exception?> onPeerDied, Action<ulong> onCancelRequested);

    /// <summary>Tells the peer that our call <paramref name="transactionId"/> was cancelled or timed out. Best effort.</summary>
    void SendCancel(ulong transactionId);
}
