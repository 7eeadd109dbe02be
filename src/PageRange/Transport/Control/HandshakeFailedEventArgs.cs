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

    /// <summary>
    /// Why the handshake failed: a <see cref="ConnectionRefusedException"/> (either side refused the other; the message
    /// says why), a <see cref="TimeoutException"/>, a <see cref="PeerDiedException"/> (the peer left half-way), or
    /// another error confined to that one client, such as a socket error.
    /// </summary>
    public Exception Exception { get; }
}
