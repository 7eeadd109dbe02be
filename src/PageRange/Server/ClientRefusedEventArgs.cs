namespace PageRange.Server;

/// <summary>
/// A limit refused a client, before or after its handshake: the server's (<see cref="PageRangeServerOptions.MaxClients"/>,
/// <see cref="PageRangeServerOptions.MaxClientsPerUid"/>) or its listener's share of the handshakes in progress
/// (<see cref="PageRangeOptions.MaxHandshakesPerUid"/>, <see cref="PageRangeOptions.MaxHandshakesPerProcess"/>). The client
/// is told only that it was refused; the reason is here.
/// </summary>
public sealed class ClientRefusedEventArgs : EventArgs
{
    internal ClientRefusedEventArgs(int pid, uint uid, uint gid, string reason)
    {
        Pid = pid;
        Uid = uid;
        Gid = gid;
        Reason = reason;
    }

    /// <summary>The refused process's id.</summary>
    public int Pid { get; }

    /// <summary>Its user id.</summary>
    public uint Uid { get; }

    /// <summary>Its group id.</summary>
    public uint Gid { get; }

    /// <summary>Which limit refused it, with the numbers.</summary>
    public string Reason { get; }

    /// <inheritdoc/>
    public override string ToString() => $"pid {Pid} (uid {Uid}) refused: {Reason}";
}
