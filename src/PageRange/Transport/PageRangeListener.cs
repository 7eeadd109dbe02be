using System.Net.Sockets;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// Listens for PageRange connections on a name: the abstract Unix socket <c>\0pagerange/&lt;name&gt;</c>, which leaves
/// no file behind and disappears with the process, even after a crash.
/// </summary>
/// <remarks>
/// Every process that connects is checked with <c>SO_PEERCRED</c> (by default only the same uid is allowed; see
/// <see cref="PageRangeOptions.AllowedUids"/>) and must complete the handshake within
/// <see cref="PageRangeOptions.ConnectTimeout"/>. A handshake that fails is reported through <see cref="HandshakeFailed"/>
/// and does not end <see cref="AcceptAsync"/>, so a bad client cannot stop a server. Handshakes run one at a time.
/// Thread safety: every member may be called from any thread.
/// </remarks>
public sealed class PageRangeListener : IAsyncDisposable
{
    private const int Backlog = 128;

    private readonly Socket _socket;
    private readonly PageRangeOptions _options;
    private readonly CancellationTokenSource _disposing = new();
    private int _disposed;

    private PageRangeListener(Socket socket, string name, PageRangeOptions options)
    {
        _socket = socket;
        Name = name;
        _options = options;
    }

    /// <summary>Raised, on the accepting thread, for each process whose handshake failed.</summary>
    public event EventHandler<HandshakeFailedEventArgs>? HandshakeFailed;

    /// <summary>The name this listener listens on.</summary>
    public string Name { get; }

    /// <summary>Starts listening on <paramref name="name"/>.</summary>
    /// <param name="name">The name: 1 to 97 bytes of UTF-8, no NUL. Processes connect with the same name.</param>
    /// <param name="options">The options of every connection accepted here; null for the defaults. Copied.</param>
    /// <returns>The listener.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long or contains a NUL.</exception>
    /// <exception cref="PageRangeException">Another listener already has the name.</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    public static PageRangeListener Listen(string name, PageRangeOptions? options = null)
    {
        UnixDomainSocketEndPoint endPoint = ControlHandshake.GetEndPoint(name);
        Interop.EnsureLinux();
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(endPoint);
            socket.Listen(Backlog);
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
        return new PageRangeListener(socket, name, (options ?? new PageRangeOptions()).Clone());
    }

    /// <summary>Waits for a process to connect and completes the handshake with it.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <returns>The connection.</returns>
    /// <exception cref="ObjectDisposedException">The listener was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask<PageRangeConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        (HandshakeResult handshake, InboundChannel inbound) = await AcceptHandshakeAsync(
            () => PageRangeConnection.CreateInbound(Name, _options), static inbound => inbound.Region, cancellationToken).ConfigureAwait(false);
        return await PageRangeConnection.CreateAsync(Name, handshake, inbound, _options).ConfigureAwait(false);
    }

    /// <summary>
    /// Accepts the next process whose handshake succeeds. For each attempt it creates this side's receive state with
    /// <paramref name="createOwn"/> and offers the region <paramref name="regionOf"/> returns; a failed attempt disposes
    /// that state (the refused peer may hold its memfd, so it is never reused) and is reported through
    /// <see cref="HandshakeFailed"/>.
    /// </summary>
    /// <typeparam name="TOwn">What owns this side's region, e.g. the inbound channel.</typeparam>
    /// <returns>The handshake and the state created for it, both the caller's.</returns>
    internal async ValueTask<(HandshakeResult Handshake, TOwn Own)> AcceptHandshakeAsync<TOwn>(
        Func<TOwn> createOwn, Func<TOwn, SharedRegion> regionOf, CancellationToken cancellationToken)
        where TOwn : IDisposable
    {
        ArgumentNullException.ThrowIfNull(createOwn);
        ArgumentNullException.ThrowIfNull(regionOf);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
        while (true)
        {
            Socket accepted = await AcceptSocketAsync(linked.Token).ConfigureAwait(false);

            TOwn own;
            try
            {
                own = createOwn();
            }
            catch
            {
                accepted.Dispose();
                throw;
            }

            try
            {
                HandshakeResult handshake = await ControlHandshake.AcceptAsync(accepted, Name, _options, regionOf(own), linked.Token)
                    .ConfigureAwait(false);
                return (handshake, own);
            }
            catch (Exception error) when (error is not OperationCanceledException)
            {
                // Whatever one client did wrong, the listener keeps serving the others.
                own.Dispose();
                HandshakeFailed?.Invoke(this, new HandshakeFailedEventArgs(error));
            }
            catch (OperationCanceledException) when (_disposing.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                own.Dispose();
                throw new ObjectDisposedException(nameof(PageRangeListener), $"The listener on '{Name}' was disposed.");
            }
            catch
            {
                own.Dispose();
                throw;
            }
        }
    }

    /// <summary>Accepts the next connected socket, before any handshake. A seam for tests that drive the handshake themselves.</summary>
    /// <exception cref="ObjectDisposedException">The listener was disposed.</exception>
    internal async ValueTask<Socket> AcceptSocketAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception error) when (error is ObjectDisposedException or OperationCanceledException or SocketException
                                      && Volatile.Read(ref _disposed) != 0)
        {
            throw new ObjectDisposedException(nameof(PageRangeListener), $"The listener on '{Name}' was disposed.");
        }
    }

    /// <summary>Stops listening and frees the name at once; connections already accepted are not affected.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _disposing.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        _disposing.Dispose();
    }
}
