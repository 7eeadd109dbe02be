namespace PageRange.Transport;

/// <summary>A process connected to a <see cref="PageRangeListener"/> but the handshake failed; the listener keeps accepting.</summary>
public sealed class HandshakeFailedEventArgs : EventArgs
{
    /// <summary>Creates the event data.</summary>
    /// <param name="exception">Why the handshake failed.</param>
    public HandshakeFailedEventArgs(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        Exception = exception;
    }

    /// <summary>Creates the event data for a peer whose credentials were read.</summary>
    internal HandshakeFailedEventArgs(Exception exception, Interop.PeerCredentials? peer)
        : this(exception) =>
        Peer = peer;

    /// <summary>
    /// Why the handshake failed: a <see cref="ConnectionRefusedException"/> (either side refused the other; the message
    /// says why), a <see cref="TimeoutException"/>, a <see cref="PeerDiedException"/> (the peer left half-way), or
    /// another error confined to that one client, such as a socket error.
    /// </summary>
    public Exception Exception { get; }

    /// <summary>The peer's pid as <c>SO_PEERCRED</c> reported it; <see langword="null"/> if the failure came before it was read.</summary>
    /// <remarks>0 when the peer lives in a pid namespace this process cannot see.</remarks>
    public int? PeerPid => Peer?.Pid;

    /// <summary>The peer's uid as <c>SO_PEERCRED</c> reported it; <see langword="null"/> if the failure came before it was read.</summary>
    public uint? PeerUid => Peer?.Uid;

    /// <summary>The peer's credentials, when they were read.</summary>
    internal Interop.PeerCredentials? Peer { get; }
}
