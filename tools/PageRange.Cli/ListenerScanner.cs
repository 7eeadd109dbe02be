namespace PageRange.Cli;

/// <summary>Finds the PageRange listeners of this machine and the processes that hold them.</summary>
internal static class ListenerScanner
{
    /// <summary>
    /// What a PageRange listener's abstract address starts with, as <c>/proc/net/unix</c> shows it: the library binds
    /// <c>\0pagerange/NAME</c> (<c>ControlHandshake.AbstractPrefix</c>; a test keeps the two equal).
    /// </summary>
    public const string AddressPrefix = "@pagerange/";

    /// <summary>The listeners, by name, with their processes where this user may see them.</summary>
    public static IReadOnlyList<ListenerInfo> Scan() => Match(UnixSocketTable.Read(), ProcessSockets.Read);

    /// <summary>
    /// The listeners among <paramref name="sockets"/>, each matched to a process by <paramref name="findHolders"/>
    /// (given the inodes wanted, it returns inode to pid).
    /// </summary>
    internal static IReadOnlyList<ListenerInfo> Match(
        IReadOnlyList<UnixSocketEntry> sockets, Func<IReadOnlySet<long>, IReadOnlyDictionary<long, int>> findHolders)
    {
        UnixSocketEntry[] listeners = [.. sockets.Where(socket => socket.IsListening && socket.Path.StartsWith(AddressPrefix, StringComparison.Ordinal))];
        if (listeners.Length == 0)
        {
            return [];
        }
        IReadOnlyDictionary<long, int> holders = findHolders(listeners.Select(listener => listener.Inode).ToHashSet());
        return [.. listeners
            .Select(listener =>
            {
                int? pid = holders.TryGetValue(listener.Inode, out int holder) ? holder : null;
                int connections = sockets.Count(socket => !socket.IsListening && socket.IsConnected && socket.Path == listener.Path);
                return new ListenerInfo(
                    listener.Path[AddressPrefix.Length..], listener.Inode, pid,
                    pid is { } p ? ProcessSockets.NameOf(p) : null, pid is { } q ? ProcessSockets.UidOf(q) : null, connections);
            })
            .OrderBy(listener => listener.Name, StringComparer.Ordinal)];
    }
}
