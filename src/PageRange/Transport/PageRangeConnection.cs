using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// One end of a PageRange connection between two processes: each side receives in a region it owns and writes into
/// the peer's.
/// </summary>
/// <remarks>
/// Made by <see cref="ConnectAsync"/> or <see cref="PageRangeListener.AcceptAsync"/>; symmetric once set up. The
/// control socket stays open for the connection's life, and its end is the peer's death notification
/// (<see cref="PeerDied"/>). Thread safety: every member may be called from any thread.
/// </remarks>
public sealed class PageRangeConnection : IAsyncDisposable
{
    private readonly HandshakeResult _handshake;
    private readonly SharedRegion _ownRegion;
    private int _disposed;

    internal PageRangeConnection(string name, HandshakeResult handshake, SharedRegion ownRegion)
    {
        Name = name;
        _handshake = handshake;
        _ownRegion = ownRegion;
        handshake.Control.StartWatching();
    }

    /// <summary>The listener's name.</summary>
    public string Name { get; }

    /// <summary>The peer's process id, from <c>SO_PEERCRED</c> (binder's <c>getCallingPid</c>).</summary>
    public int PeerPid => _handshake.PeerCredentials.Pid;

    /// <summary>The peer's effective uid when it connected or listened, from <c>SO_PEERCRED</c> (binder's <c>getCallingUid</c>).</summary>
    public uint PeerUid => _handshake.PeerCredentials.Uid;

    /// <summary>The peer's effective gid when it connected or listened, from <c>SO_PEERCRED</c>.</summary>
    public uint PeerGid => _handshake.PeerCredentials.Gid;

    /// <summary>
    /// Cancelled once the connection is over: the peer closed its end, exited or was killed, sent something invalid,
    /// or this connection was disposed.
    /// </summary>
    public CancellationToken PeerDied => _handshake.Control.PeerDied;

    /// <summary>The handshake's result: control socket, peer region and hello. For the transport layered on top.</summary>
    internal HandshakeResult Handshake => _handshake;

    /// <summary>The region this side receives in.</summary>
    internal SharedRegion OwnRegion => _ownRegion;

    /// <summary>Connects to the listener <paramref name="name"/>.</summary>
    /// <param name="name">The listener's name.</param>
    /// <param name="options">This side's options; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The connection.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long or contains a NUL.</exception>
    /// <exception cref="PageRangeException">Nobody listens on <paramref name="name"/>.</exception>
    /// <exception cref="ConnectionRefusedException">Either side refused the other (uid, version, region); the message says why.</exception>
    /// <exception cref="TimeoutException">Connecting took longer than <see cref="PageRangeOptions.ConnectTimeout"/>.</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    public static async ValueTask<PageRangeConnection> ConnectAsync(
        string name, PageRangeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ControlHandshake.ValidateName(name);
        options = (options ?? new PageRangeOptions()).Clone();
        SharedRegion ownRegion = CreateOwnRegion(name, options);
        try
        {
            HandshakeResult handshake = await ControlHandshake.ConnectAsync(name, options, ownRegion, cancellationToken).ConfigureAwait(false);
            return new PageRangeConnection(name, handshake, ownRegion);
        }
        catch
        {
            ownRegion.Dispose();
            throw;
        }
    }

    /// <summary>Creates the region this side receives in, sized by <paramref name="options"/>.</summary>
    internal static SharedRegion CreateOwnRegion(string name, PageRangeOptions options) =>
        SharedRegion.Create($"pagerange:{name}", options.RegionSize, PageRangeOptions.MaxRegionSize);

    /// <summary>Closes the control socket (the peer sees the connection end) and unmaps both regions.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _handshake.DisposeAsync().ConfigureAwait(false);
        _ownRegion.Dispose();
    }
}
