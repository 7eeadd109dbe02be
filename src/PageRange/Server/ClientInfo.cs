namespace PageRange.Server;

/// <summary>One client of a <see cref="PageRangeServer"/>: who it is (<c>SO_PEERCRED</c>) and since when.</summary>
public sealed class ClientInfo
{
    internal ClientInfo(long id, int pid, uint uid, uint gid, DateTimeOffset connectedAt)
    {
        Id = id;
        Pid = pid;
        Uid = uid;
        Gid = gid;
        ConnectedAt = connectedAt;
    }

    /// <summary>The server's number for this client, unique for the server's life (pids are reused).</summary>
    public long Id { get; }

    /// <summary>The client's process id.</summary>
    public int Pid { get; }

    /// <summary>The client's user id.</summary>
    public uint Uid { get; }

    /// <summary>The client's group id.</summary>
    public uint Gid { get; }

    /// <summary>When its handshake completed.</summary>
    public DateTimeOffset ConnectedAt { get; }

    /// <inheritdoc/>
    public override string ToString() => $"client {Id} (pid {Pid}, uid {Uid}, gid {Gid})";
}
