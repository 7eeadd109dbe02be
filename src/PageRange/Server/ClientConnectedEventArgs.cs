namespace PageRange.Server;

/// <summary>A client completed its handshake and was admitted.</summary>
public sealed class ClientConnectedEventArgs : EventArgs
{
    internal ClientConnectedEventArgs(ClientInfo client) => Client = client;

    /// <summary>The client.</summary>
    public ClientInfo Client { get; }
}
