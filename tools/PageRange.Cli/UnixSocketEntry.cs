namespace PageRange.Cli;

/// <summary>One line of <c>/proc/net/unix</c>.</summary>
/// <param name="Flags">The socket's flags; <see cref="UnixSocketTable.AcceptConnections"/> marks a listener.</param>
/// <param name="State">The socket's state: 1 unconnected (a listener), 3 connected.</param>
/// <param name="Inode">The socket's inode, as <c>/proc/PID/fd</c> links name it (<c>socket:[INODE]</c>).</param>
/// <param name="Path">The bound address; an abstract one starts with <c>@</c>; empty when unbound.</param>
internal sealed record UnixSocketEntry(uint Flags, int State, long Inode, string Path)
{
    /// <summary>Whether the socket listens (<c>__SO_ACCEPTCON</c>).</summary>
    public bool IsListening => (Flags & UnixSocketTable.AcceptConnections) != 0;

    /// <summary>Whether the socket is connected (<c>SS_CONNECTED</c>).</summary>
    public bool IsConnected => State == UnixSocketTable.Connected;
}
