// Locks: _startLock and _sharesLock, never nested and never held while calling out.
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// Listens for PageRange connections on a name: by default the abstract Unix socket <c>\0pagerange/&lt;name&gt;</c>,
/// which leaves no file behind and disappears with the process, even after a crash; or, with
/// <see cref="PageRangeNamespace.Private"/>, a socket file in a directory only this uid can enter.
/// </summary>
/// <remarks>
/// <para>
/// Which to choose (<see cref="PageRangeOptions.Namespace"/>): abstract names are per network namespace, and any process
/// in it, of any uid, can bind a free name first and so impersonate the service (its clients would still refuse it
/// on the uid check, but the real service could not start), or connect to it (and be refused by the uid check). Choose
/// <see cref="PageRangeNamespace.Private"/> for a service whose clients all run as its own uid: another user can
/// neither take the name nor reach the socket; a stale socket file left by a crash is replaced safely (the listener
/// holds a lock beside it for its life). Choose <see cref="PageRangeNamespace.Abstract"/> when clients of other uids
/// must connect (<see cref="PageRangeOptions.AllowedUids"/>), or across mount namespaces (containers) that share the
/// network namespace. Either way every connection is checked with <c>SO_PEERCRED</c>, both ways.
/// </para>
/// <para>
/// Every process that connects is checked with <c>SO_PEERCRED</c> (by default only the same uid is allowed; see
/// <see cref="PageRangeOptions.AllowedUids"/>) and must send its hello within <see cref="PageRangeOptions.HelloTimeout"/>
/// and complete the handshake within <see cref="PageRangeOptions.ConnectTimeout"/>. Handshakes run concurrently, each
/// on its own task with its own deadlines, from the first <see cref="AcceptAsync"/> on: a silent or slow client never
/// delays another, and <see cref="AcceptAsync"/> returns the next handshake that completed. A handshake that fails is
/// reported through <see cref="HandshakeFailed"/> and never ends <see cref="AcceptAsync"/>, so a bad client cannot stop
/// a server.
/// </para>
/// <para>
/// Bounded work: at most <see cref="MaxConcurrentHandshakes"/> handshakes run at once and at most
/// <see cref="MaxCompletedWaiting"/> completed ones wait for <see cref="AcceptAsync"/>; beyond that the listener stops
/// taking new sockets (they wait in the kernel's backlog) until one is done. So that one peer cannot hold them all, the
/// processes of one uid run at most <see cref="PageRangeOptions.MaxHandshakesPerUid"/> of them and one process at most
/// <see cref="PageRangeOptions.MaxHandshakesPerProcess"/>; a connection beyond its share is refused at once. After its
/// hello a peer has <see cref="PageRangeOptions.HelloTimeout"/> again (5 seconds if that is infinite) to answer the
/// listener's, even with an infinite <see cref="PageRangeOptions.ConnectTimeout"/>.
/// </para>
/// <para>
/// The log lines of failed and refused handshakes are rate-limited (at most 10 per 5 seconds per listener; the next
/// line says how many were left out); <see cref="HandshakeFailed"/> (and a server's handshake metric) sees every one.
/// </para>
/// <para>Thread safety: every member may be called from any thread.</para>
/// </remarks>
public sealed class PageRangeListener : IAsyncDisposable
{
    /// <summary>The most handshakes that run at once.</summary>
    internal const int MaxConcurrentHandshakes = 64;

    /// <summary>The most completed handshakes that wait for <see cref="AcceptAsync"/>.</summary>
    internal const int MaxCompletedWaiting = 16;

    private const int Backlog = 128;

    // How long the accept loop pauses after accept(2) failed for a reason that is not one client's (EMFILE, ENOBUFS):
    // long enough not to spin, short enough that the listener recovers at once when descriptors free up.
    private static readonly TimeSpan s_acceptRetryDelay = TimeSpan.FromMilliseconds(50);

    private readonly Socket _socket;
    private readonly PageRangeOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _disposing = new();
    private readonly SemaphoreSlim _handshakeSlots = new(MaxConcurrentHandshakes, MaxConcurrentHandshakes);
    private readonly Channel<CompletedHandshake> _completed = Channel.CreateBounded<CompletedHandshake>(
        new BoundedChannelOptions(MaxCompletedWaiting) { FullMode = BoundedChannelFullMode.Wait });
    private readonly ConcurrentDictionary<Task, bool> _handshakes = new();
    // The handshakes in progress per peer uid and per peer pid (PageRangeOptions.MaxHandshakesPerUid and
    // MaxHandshakesPerProcess), under _sharesLock; an entry goes when its count reaches zero.
    private readonly Lock _sharesLock = new();
    private readonly Dictionary<uint, int> _handshakesPerUid = [];
    private readonly Dictionary<int, int> _handshakesPerPid = [];
    // Every failed or refused handshake is a line a peer can cause at will (connect and close in a loop): per listener,
    // so one listener's flood does not hide another's lines. The event and the metrics still see every one.
    private readonly LogRateLimit _handshakeLog = new(10, TimeSpan.FromSeconds(5));
    private readonly Lock _startLock = new();
    private readonly IDisposable? _ownedPath;
    private Task _acceptLoop = Task.CompletedTask;
    private OwnFactory? _factory;
    private int _disposed;

    private PageRangeListener(Socket socket, string name, PageRangeOptions options, IDisposable? ownedPath)
    {
        _socket = socket;
        Name = name;
        _options = options;
        _logger = PageRangeLog.CreateLogger(options.LoggerFactory, PageRangeLogEvents.TransportCategory);
        _ownedPath = ownedPath;
    }

    /// <summary>
    /// Raised for each process whose handshake failed, and when accepting a socket failed for a reason that is not one
    /// client's (the process is out of descriptors); the listener keeps accepting either way.
    /// </summary>
    /// <remarks>
    /// Raised on the failed handshake's own task, so handlers may run concurrently with each other; a handler must be
    /// thread-safe and should return quickly. An exception a handler throws is ignored: it must not stop the listener.
    /// </remarks>
    public event EventHandler<HandshakeFailedEventArgs>? HandshakeFailed;

    /// <summary>The name this listener listens on.</summary>
    public string Name { get; }

    /// <summary>
    /// The admission check, called on each handshake's task right after the peer's credentials (<c>SO_PEERCRED</c>)
    /// were read and its uid allowed: a non-null result refuses that peer, and the result is the reason given to
    /// <see cref="HandshakeFailed"/> (the peer only learns that it was refused).
    /// </summary>
    /// <remarks>
    /// May be called concurrently from several handshakes, so it must be thread-safe. A peer it admits may still fail
    /// its handshake later (its <see cref="HandshakeFailedEventArgs.PeerPid"/> then says so). An exception it throws
    /// fails only that handshake.
    /// </remarks>
    internal Func<Interop.PeerCredentials, string?>? Admit { get; set; }

    /// <summary>
    /// Called on a handshake's task when the listener itself refused a peer for being beyond its uid's or its process's
    /// share (<see cref="PageRangeOptions.MaxHandshakesPerUid"/>, <see cref="PageRangeOptions.MaxHandshakesPerProcess"/>),
    /// with the reason, which names the option; <see cref="Admit"/> is not called for that peer. The refusal then shows
    /// in <see cref="HandshakeFailed"/> too, as one <see cref="Admit"/> made does.
    /// </summary>
    /// <remarks>
    /// Lets a server raise its refusal event for every refusal, whichever limit made it. May be called concurrently from
    /// several handshakes, so it must be thread-safe; an exception it throws fails only that handshake, which is refused anyway.
    /// </remarks>
    internal Action<Interop.PeerCredentials, string>? ShareRefused { get; set; }

    /// <summary>Starts listening on <paramref name="name"/>.</summary>
    /// <param name="name">The name: 1 to 97 bytes of UTF-8, no NUL; with <see cref="PageRangeNamespace.Private"/> also no
    /// '/', not "." or "..", and short enough for the socket file's path. Processes connect with the same name and the
    /// same <see cref="PageRangeOptions.Namespace"/>.</param>
    /// <param name="options">The options of every connection accepted here; null for the defaults. Copied.</param>
    /// <returns>The listener.</returns>
    /// <exception cref="ArgumentException">The name is empty, too long or contains a NUL, or the options' region is too
    /// small for its rings (<see cref="PageRangeOptions.RegionSize"/>).</exception>
    /// <exception cref="PageRangeException">Another listener already has the name, or the private directory is not this
    /// uid's alone (another user created it, or its mode lets others in).</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    public static PageRangeListener Listen(string name, PageRangeOptions? options = null)
    {
        ControlHandshake.ValidateName(name);
        options = (options ?? new PageRangeOptions()).Clone();
        options.Validate();
        Interop.EnsureLinux();
        (Socket socket, IDisposable? ownedPath) = ListenerEndPoint.Bind(name, options.Namespace, Backlog);
        return new PageRangeListener(socket, name, options, ownedPath);
    }

    /// <summary>Waits for the next process whose handshake completed and returns its connection.</summary>
    /// <param name="cancellationToken">Stops waiting; handshakes in progress go on for the next call.</param>
    /// <returns>The connection.</returns>
    /// <exception cref="ObjectDisposedException">The listener was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask<PageRangeConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            (HandshakeResult handshake, InboundChannel inbound) = await AcceptHandshakeAsync(
                () => PageRangeConnection.CreateInbound(Name, _options), static inbound => inbound.Region, cancellationToken).ConfigureAwait(false);
            Interop.PeerCredentials peer = handshake.PeerCredentials;
            try
            {
                return await PageRangeConnection.CreateAsync(Name, handshake, inbound, _options).ConfigureAwait(false);
            }
            catch (Exception error) when (error is not OperationCanceledException)
            {
                // CreateAsync closed both. The handshake validated the peer's region, but the peer may have rewritten its
                // header since: that is its failure, not the listener's.
                RaiseHandshakeFailed(error, peer);
            }
        }
    }

    /// <summary>
    /// Takes the next completed handshake. The first call fixes how every handshake of this listener creates this
    /// side's receive state: <paramref name="createOwn"/>, called once the peer's hello passed its checks, and the
    /// region <paramref name="regionOf"/> returns is offered to the peer. A failed handshake disposes that state (the
    /// refused peer may hold its memfd, so it is never reused) and is reported through <see cref="HandshakeFailed"/>.
    /// </summary>
    /// <typeparam name="TOwn">What owns this side's region, e.g. the inbound channel; the same on every call.</typeparam>
    /// <returns>The handshake and the state created for it, both the caller's.</returns>
    /// <exception cref="InvalidOperationException">An earlier call fixed another <typeparamref name="TOwn"/>.</exception>
    internal async ValueTask<(HandshakeResult Handshake, TOwn Own)> AcceptHandshakeAsync<TOwn>(
        Func<TOwn> createOwn, Func<TOwn, SharedRegion> regionOf, CancellationToken cancellationToken)
        where TOwn : class, IDisposable
    {
        ArgumentNullException.ThrowIfNull(createOwn);
        ArgumentNullException.ThrowIfNull(regionOf);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        EnsureStarted(new OwnFactory(typeof(TOwn), () => createOwn(), own => regionOf((TOwn)own)));
        CompletedHandshake completed;
        try
        {
            completed = await _completed.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException closed)
        {
            throw closed.InnerException is { } fatal
                ? new PageRangeException($"The listener on '{Name}' stopped accepting: {fatal.Message}", fatal)
                : new ObjectDisposedException(nameof(PageRangeListener), $"The listener on '{Name}' was disposed.");
        }
        return (completed.Handshake, (TOwn)completed.Own);
    }

    /// <summary>Accepts the next connected socket, before any handshake. A seam for tests that drive the handshake themselves.</summary>
    /// <remarks>Do not mix with <see cref="AcceptAsync"/> on one listener: both take sockets from the same queue.</remarks>
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

    /// <summary>
    /// Stops listening and frees the name at once, ends the handshakes in progress and closes the completed ones nobody
    /// accepted; connections already accepted are not affected.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _disposing.CancelAsync().ConfigureAwait(false);
        _socket.Dispose();
        _ownedPath?.Dispose();
        Task loop;
        lock (_startLock)
        {
            loop = _acceptLoop;
        }
        await loop.ConfigureAwait(false);
        // The loop has ended, so no handshake starts any more; wait for those in flight (they see _disposing at once).
        await Task.WhenAll(_handshakes.Keys).ConfigureAwait(false);
        _completed.Writer.TryComplete();
        while (_completed.Reader.TryRead(out CompletedHandshake completed))
        {
            await completed.Handshake.DisposeAsync().ConfigureAwait(false);
            completed.Own.Dispose();
        }
        _disposing.Dispose();
    }

    private void EnsureStarted(OwnFactory factory)
    {
        lock (_startLock)
        {
            if (_factory is null)
            {
                ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
                _factory = factory;
                _acceptLoop = Task.Run(AcceptLoopAsync);
            }
            else if (_factory.OwnType != factory.OwnType)
            {
                throw new InvalidOperationException(
                    $"The listener on '{Name}' creates {_factory.OwnType.Name} for its handshakes; it cannot also create {factory.OwnType.Name}.");
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        CancellationToken stopping = _disposing.Token;
        try
        {
            while (true)
            {
                await _handshakeSlots.WaitAsync(stopping).ConfigureAwait(false);
                Socket accepted;
                try
                {
                    accepted = await _socket.AcceptAsync(stopping).ConfigureAwait(false);
                }
                catch (SocketException error) when (!stopping.IsCancellationRequested)
                {
                    // EMFILE, ENOBUFS, ECONNABORTED...: the process's trouble or one client's, never a reason to stop.
                    _handshakeSlots.Release();
                    RaiseHandshakeFailed(
                        new PageRangeException($"Accepting a connection on '{Name}' failed: {error.Message}", error), peer: null);
                    await Task.Delay(s_acceptRetryDelay, stopping).ConfigureAwait(false);
                    continue;
                }
                catch
                {
                    _handshakeSlots.Release();
                    throw;
                }
                StartHandshake(accepted);
            }
        }
        catch (Exception error) when (stopping.IsCancellationRequested && error is OperationCanceledException or ObjectDisposedException or SocketException)
        {
            // Disposed: DisposeAsync closes what is left.
        }
        catch (Exception error)
        {
            // Nothing a client does gets here; AcceptAsync reports it from now on.
            _completed.Writer.TryComplete(error);
        }
    }

    /// <summary>
    /// Whether the listener stopped accepting for good (its accept loop failed for a reason of this process, not of a
    /// client's): every <see cref="AcceptAsync"/> fails from now on.
    /// </summary>
    internal bool StoppedAccepting => _completed.Reader.Completion.IsFaulted;

    /// <summary>Makes <see cref="AcceptAsync"/> fail for good with <paramref name="error"/>, as the accept loop's failure does.</summary>
    internal void StopAcceptingForTest(Exception error) => _completed.Writer.TryComplete(error);

    private void StartHandshake(Socket socket)
    {
        Task handshake = HandshakeAsync(socket);
        _handshakes.TryAdd(handshake, true);
        // Remove it once done; if it finished before TryAdd, this runs inline and still removes it.
        _ = handshake.ContinueWith(
            static (done, state) => ((ConcurrentDictionary<Task, bool>)state!).TryRemove(done, out _),
            _handshakes, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task HandshakeAsync(Socket socket)
    {
        // Leave the accept loop's thread at once: this handshake's work must not delay the next accept.
        await Task.Yield();
        CancellationToken stopping = _disposing.Token;
        OwnFactory factory = _factory!;
        IDisposable? own = null;
        Interop.PeerCredentials? peer = null;
        bool shareTaken = false;
        try
        {
            ControlChannel channel = new(socket, Name, _options.ControlSendTimeout);
            peer = channel.PeerCredentials;
            HandshakeResult handshake = await ControlHandshake.AcceptChannelAsync(
                channel, _options, OfferOwn, AdmitWithinShare, stopping).ConfigureAwait(false);
            try
            {
                await _completed.Writer.WriteAsync(new CompletedHandshake(handshake, own!), stopping).ConfigureAwait(false);
            }
            catch
            {
                await handshake.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
        catch (Exception error)
        {
            own?.Dispose();
            if (!stopping.IsCancellationRequested)
            {
                RaiseHandshakeFailed(error, peer);
            }
        }
        finally
        {
            if (shareTaken)
            {
                ReturnShare(peer!.Value);
            }
            _handshakeSlots.Release();
        }

        // Runs right after the uid check, before anything is read from the peer: a peer over its share is refused (and
        // its socket closed) at once, so it holds its slot only for that.
        string? AdmitWithinShare(Interop.PeerCredentials credentials)
        {
            if (TryTakeShare(credentials) is { } refusal)
            {
                ShareRefused?.Invoke(credentials, refusal);
                return refusal;
            }
            shareTaken = true;
            return Admit?.Invoke(credentials);
        }

        (HelloMessage, SafeMemfdHandle) OfferOwn()
        {
            own = factory.Create();
            SharedRegion region = factory.RegionOf(own);
            return (ControlHandshake.CreateHello(_options, region), region.Handle);
        }
    }

    /// <summary>
    /// Counts a handshake of <paramref name="peer"/> against its uid's and its process's shares, or says why it is
    /// refused: one of them is full. Pid 0 (a peer in a pid namespace this process cannot see) has no process share:
    /// every such peer has it, so only the uid's share bounds them.
    /// </summary>
    private string? TryTakeShare(Interop.PeerCredentials peer)
    {
        lock (_sharesLock)
        {
            _handshakesPerUid.TryGetValue(peer.Uid, out int ofUid);
            if (ofUid >= _options.MaxHandshakesPerUid)
            {
                return $"uid {peer.Uid} has {ofUid} handshakes in progress, its share of the listener's {MaxConcurrentHandshakes} (PageRangeOptions.MaxHandshakesPerUid is {_options.MaxHandshakesPerUid})";
            }
            int ofPid = 0;
            if (peer.Pid != 0)
            {
                _handshakesPerPid.TryGetValue(peer.Pid, out ofPid);
                if (ofPid >= _options.MaxHandshakesPerProcess)
                {
                    return $"pid {peer.Pid} has {ofPid} handshakes in progress, its share of the listener's {MaxConcurrentHandshakes} (PageRangeOptions.MaxHandshakesPerProcess is {_options.MaxHandshakesPerProcess})";
                }
                _handshakesPerPid[peer.Pid] = ofPid + 1;
            }
            _handshakesPerUid[peer.Uid] = ofUid + 1;
            return null;
        }
    }

    /// <summary>Gives back what <see cref="TryTakeShare"/> took, once the handshake's slot is given back.</summary>
    private void ReturnShare(Interop.PeerCredentials peer)
    {
        lock (_sharesLock)
        {
            Decrement(_handshakesPerUid, peer.Uid);
            if (peer.Pid != 0)
            {
                Decrement(_handshakesPerPid, peer.Pid);
            }
        }

        static void Decrement<TKey>(Dictionary<TKey, int> counts, TKey key)
            where TKey : notnull
        {
            int left = counts[key] - 1;
            if (left == 0)
            {
                counts.Remove(key);
            }
            else
            {
                counts[key] = left;
            }
        }
    }

    /// <summary>The handshakes in progress of <paramref name="uid"/> and of <paramref name="pid"/>, for tests.</summary>
    internal (int OfUid, int OfPid) HandshakesInProgressForTest(uint uid, int pid)
    {
        lock (_sharesLock)
        {
            return (_handshakesPerUid.GetValueOrDefault(uid), _handshakesPerPid.GetValueOrDefault(pid));
        }
    }

    /// <summary>The rate limit of this listener's handshake lines; tests shorten its window.</summary>
    internal LogRateLimit HandshakeLogForTest => _handshakeLog;

    private void RaiseHandshakeFailed(Exception error, Interop.PeerCredentials? peer)
    {
        PageRangeConnection.LogHandshakeFailure(_logger, Name, error, peer, _handshakeLog);
        EventHandler<HandshakeFailedEventArgs>? handlers = HandshakeFailed;
        if (handlers is null)
        {
            return;
        }
        var args = new HandshakeFailedEventArgs(error, peer);
        foreach (EventHandler<HandshakeFailedEventArgs> handler in handlers.GetInvocationList().Cast<EventHandler<HandshakeFailedEventArgs>>())
        {
            try
            {
                handler(this, args);
            }
#pragma warning disable CA1031 // A handler's bug must not stop the listener, and there is nobody to rethrow to.
            catch (Exception)
#pragma warning restore CA1031
            {
                // Ignored on purpose (see the event's remarks).
            }
        }
    }

    /// <summary>How every handshake of this listener creates this side's receive state.</summary>
    private sealed record OwnFactory(Type OwnType, Func<IDisposable> Create, Func<IDisposable, SharedRegion> RegionOf);

    /// <summary>A handshake that completed and waits for <see cref="AcceptAsync"/>, with the state created for it.</summary>
    private readonly record struct CompletedHandshake(HandshakeResult Handshake, IDisposable Own);
}
