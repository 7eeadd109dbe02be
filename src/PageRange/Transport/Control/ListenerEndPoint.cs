using System.Net.Sockets;
using System.Text;

namespace PageRange.Transport;

/// <summary>
/// Where a name lives, for the listener and for the connecting side alike: an abstract socket, or a socket file in a
/// private directory (<see cref="PageRangeNamespace"/>).
/// </summary>
/// <remarks>
/// A private name is guarded twice. The directory is this uid's alone (mode 0700, owner checked on both sides, never a
/// symbolic link), so no other user can reach or replace the socket. And the listener holds an exclusive <c>flock</c> on
/// <c>NAME.lock</c> beside it for its whole life: the kernel drops the lock when the process ends, even by a crash, so a
/// listener that holds it knows a socket file already there is stale and may replace it, while a second listener of the
/// same uid finds the name taken.
/// </remarks>
internal static class ListenerEndPoint
{
    // sun_path holds 108 bytes, the terminating NUL included.
    private const int MaxPathBytes = 107;

    /// <summary>The endpoint a connecting process uses for <paramref name="name"/>; checks the private directory first.</summary>
    /// <exception cref="ArgumentException">The name is not valid in that namespace.</exception>
    /// <exception cref="PageRangeException">The private directory is missing or not this uid's alone.</exception>
    internal static UnixDomainSocketEndPoint ForConnect(string name, PageRangeNamespace kind)
    {
        if (kind == PageRangeNamespace.Abstract)
        {
            return ControlHandshake.GetEndPoint(name);
        }
        string path = PrivatePath(name, out string directory);
        if (Interop.GetOwnerAndMode(directory) is { } existing)
        {
            CheckPrivate(directory, existing);
        }
        // A missing directory: the connect fails with "nobody listens", which is the truth.
        return new UnixDomainSocketEndPoint(path);
    }

    /// <summary>How a refusal or error names the address.</summary>
    internal static string Describe(string name, PageRangeNamespace kind) =>
        kind == PageRangeNamespace.Abstract
            ? $"abstract socket @{ControlHandshake.AbstractPrefix}{name}"
            : $"socket file {PrivatePath(name, out _)}";

    /// <summary>Binds and listens on <paramref name="name"/>; for a private name also returns what to release at the end.</summary>
    /// <exception cref="PageRangeException">The name is taken, or the private directory is not this uid's alone.</exception>
    internal static (Socket Socket, IDisposable? Owned) Bind(string name, PageRangeNamespace kind, int backlog)
    {
        if (kind == PageRangeNamespace.Abstract)
        {
            return (BindAbstract(name, backlog), null);
        }
        string path = PrivatePath(name, out string directory);
        EnsurePrivateDirectory(directory);
        SafeMemfdHandle lockFile = Interop.OpenLockFile(path + ".lock");
        try
        {
            if (!Interop.TryLockExclusive(lockFile))
            {
                throw new PageRangeException($"The PageRange name '{name}' is taken: another listener holds {path}.");
            }
            // We hold the lock, so whatever is at the path was left by a listener that is gone: replace it. Only a socket,
            // though; anything else there is not ours to delete.
            if (Interop.GetOwnerAndMode(path) is { } stale)
            {
                if ((stale.Mode & Interop.S_IFMT) != Interop.S_IFSOCK)
                {
                    throw new PageRangeException($"Cannot listen on '{name}': {path} exists and is not a socket.");
                }
                File.Delete(path);
            }
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Bind(new UnixDomainSocketEndPoint(path));
                socket.Listen(backlog);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            return (socket, new PrivateName(path, lockFile));
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>The socket file's path for <paramref name="name"/>, and its directory.</summary>
    internal static string PrivatePath(string name, out string directory)
    {
        if (name is "." or ".." || name.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException("A private PageRange name cannot contain '/' nor be '.' or '..'.", nameof(name));
        }
        string? runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        // The runtime directory counts only if it is absolute and this uid's alone, as the XDG spec requires it to be.
        directory = !string.IsNullOrEmpty(runtime) && Path.IsPathRooted(runtime) && IsPrivate(runtime)
            ? Path.Combine(runtime, "pagerange")
            : $"/tmp/pagerange-{Interop.GetEffectiveUserId()}";
        string path = Path.Combine(directory, name);
        if (Encoding.UTF8.GetByteCount(path) + ".lock".Length > MaxPathBytes)
        {
            throw new ArgumentException($"The private PageRange name '{name}' makes the path {path} longer than a socket address holds.", nameof(name));
        }
        return path;
    }

    private static bool IsPrivate(string directory) =>
        Interop.GetOwnerAndMode(directory) is { } owner
        && owner.Uid == Interop.GetEffectiveUserId()
        && (owner.Mode & Interop.S_IFMT) == Interop.S_IFDIR
        && (owner.Mode & 0x3F) == 0;

    private static void EnsurePrivateDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("PageRange's private names are socket files in a Linux directory.");
        }
        if (Interop.GetOwnerAndMode(directory) is not { } existing)
        {
            try
            {
                Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            catch (IOException)
            {
                // Created meanwhile by another process: checked below like any existing one.
            }
            existing = Interop.GetOwnerAndMode(directory)
                ?? throw new PageRangeException($"Cannot create the private PageRange directory {directory}.");
        }
        CheckPrivate(directory, existing);
    }

    private static void CheckPrivate(string directory, (uint Uid, int Mode) owner)
    {
        uint self = Interop.GetEffectiveUserId();
        if ((owner.Mode & Interop.S_IFMT) != Interop.S_IFDIR)
        {
            throw new PageRangeException($"The private PageRange directory {directory} is not a directory (a symbolic link?): refusing to use it.");
        }
        if (owner.Uid != self)
        {
            throw new PageRangeException(
                $"The private PageRange directory {directory} belongs to uid {owner.Uid}, not to this process's uid {self}: another user may have created it to squat the names; refusing to use it.");
        }
        if ((owner.Mode & 0x3F) != 0)
        {
            throw new PageRangeException(
                $"The private PageRange directory {directory} has mode {Convert.ToString(owner.Mode & 0x1FF, 8)}; it must be 700 so that no other user can reach it.");
        }
    }

    private static Socket BindAbstract(string name, int backlog)
    {
        UnixDomainSocketEndPoint endPoint = ControlHandshake.GetEndPoint(name);
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(endPoint);
            socket.Listen(backlog);
            return socket;
        }
        catch (SocketException error) when (error.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new PageRangeException(
                $"The PageRange name '{name}' is taken: another listener (abstract socket @{ControlHandshake.AbstractPrefix}{name}) is listening on it.",
                error);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>A bound private name: removes the socket file, then lets go of the lock (never the other way round).</summary>
    private sealed class PrivateName(string path, SafeMemfdHandle lockFile) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
                // Gone already; the next listener replaces it anyway, under the lock.
            }
            // The lock file stays: deleting it could let two listeners each lock a different file of the same name.
            lockFile.Dispose();
        }
    }
}
