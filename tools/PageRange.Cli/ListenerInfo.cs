namespace PageRange.Cli;

/// <summary>One PageRange listener: its name, the process holding its socket (when visible) and its open connections.</summary>
/// <param name="Name">The listener's name (the socket is <c>@pagerange/NAME</c>).</param>
/// <param name="Inode">The socket's inode, as in <c>/proc/net/unix</c>.</param>
/// <param name="Pid">The process holding the socket, or <see langword="null"/> when no readable <c>/proc/PID/fd</c> has it.</param>
/// <param name="ProcessName">That process's <c>comm</c>.</param>
/// <param name="Uid">That process's real uid.</param>
/// <param name="Connections">Accepted connections still open on the listener's name.</param>
internal sealed record ListenerInfo(string Name, long Inode, int? Pid, string? ProcessName, uint? Uid, int Connections);
