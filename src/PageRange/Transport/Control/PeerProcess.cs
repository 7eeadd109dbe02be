namespace PageRange.Transport;

/// <summary>
/// Watches the peer's process for the death backstop: a pidfd where the pid is ours to see, nothing otherwise.
/// </summary>
/// <remarks>
/// <para>
/// The control socket's end-of-file is the death notification; this backstop covers the rare case where the socket
/// outlives the process that handshook (a forked child inherited it). It must never raise a false alarm, so it watches
/// only a process it can name without doubt: never a peer whose <c>SO_PEERCRED</c> pid is 0 (it lives in a pid
/// namespace we cannot see), never a pid that is already gone when the connection is made (a listener's original pid
/// after it forked, say: the kernel reports the pid of <c>listen()</c>), and never a peer whose hello names another pid
/// than the kernel does (the process that handshook is not the one the credentials name, or its pid namespace differs
/// from ours). Those peers are declared dead only by the socket's end-of-file.
/// </para>
/// <para>Thread safety: <see cref="HasExited"/> may be called from any thread; <see cref="Dispose"/> once.</para>
/// </remarks>
internal sealed class PeerProcess : IDisposable
{
    private SafeMemfdHandle? _pidfd;

    private PeerProcess(SafeMemfdHandle? pidfd) => _pidfd = pidfd;

    /// <summary>A peer that is never watched: its death is the socket's end-of-file only.</summary>
    internal static PeerProcess Unwatched => new(null);

    /// <summary>Whether a pidfd watches the peer.</summary>
    internal bool IsWatched => Volatile.Read(ref _pidfd) is not null;

    /// <summary>Whether the watched process has exited; always <see langword="false"/> for a peer that is not watched.</summary>
    internal bool HasExited
    {
        get
        {
            if (Volatile.Read(ref _pidfd) is not { } pidfd)
            {
                return false;
            }
            try
            {
                return Interop.HasProcessExited(pidfd);
            }
            catch (ObjectDisposedException)
            {
                // Disposed concurrently: the connection is closing anyway.
                return false;
            }
        }
    }

    /// <summary>Opens the watch for the peer of <paramref name="socket"/>, whose <c>SO_PEERCRED</c> are <paramref name="credentials"/>.</summary>
    internal static PeerProcess Open(System.Net.Sockets.Socket socket, Interop.PeerCredentials credentials) =>
        credentials.Pid <= 0 ? Unwatched : new PeerProcess(Interop.TryOpenPeerPidfd(socket, credentials.Pid));

    /// <summary>Stops watching unless the peer's own word on its pid matches what the kernel reported.</summary>
    /// <param name="helloPid">The pid the peer announced in its hello, in its own pid namespace.</param>
    /// <param name="credentials">What <c>SO_PEERCRED</c> reported.</param>
    internal void KeepOnlyIf(int helloPid, Interop.PeerCredentials credentials)
    {
        if (helloPid != credentials.Pid)
        {
            Interlocked.Exchange(ref _pidfd, null)?.Dispose();
        }
    }

    /// <summary>Closes the pidfd.</summary>
    public void Dispose() => Interlocked.Exchange(ref _pidfd, null)?.Dispose();
}
