using System.Runtime.CompilerServices;
// Locks: _sessionsLock only, never held while calling out (events, connections, handlers).

using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// One process serving many client processes, binder's service model: one listener, handlers registered by code, and
/// one pool of worker threads running every client's calls. Each client is isolated: whatever it does (dies, breaks
/// the protocol, floods, goes silent) ends its own connection only, and the server reports it.
/// </summary>
/// <remarks>
/// <para>
/// Two-way calls of one client run concurrently on the pool, at most
/// <see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/> at once (the next wait in that client's own queue);
/// its oneway messages run one at a time, in the order sent (binder's rule). A handler that has been fast runs on the thread that received its call when nothing else of
/// that client waits (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>). A handler learns its caller from <see cref="CallContext"/> (<c>SO_PEERCRED</c>), fails a call
/// with <see cref="PageRangeStatusException"/>, and sees cancellation (the caller gave up, or the server is stopping)
/// through <see cref="CallContext.CancellationToken"/>. An unmapped code gets <see cref="CallStatus.Unimplemented"/>. A
/// <see cref="RemoteCallException"/> a handler lets through (a call it made failed) fails the call with that status.
/// </para>
/// <para>
/// Events are raised on the thread that noticed (an accept loop, a session's receive loop, a worker); a handler of
/// them must be quick and must not throw. Thread safety: every member may be called from any thread.
/// </para>
/// </remarks>
public sealed partial class PageRangeServer : IAsyncDisposable
{
    private const string StoppingReason = "the server is shutting down";
    private const string RefusedReason = "the server refused the connection";
    private const string StoppedReadingReason = "the client stopped reading its replies";

    private readonly PageRangeServerOptions _options;
    private readonly ILogger _logger;
    private readonly LogRateLimit _workerStartFailedLog = new(10, TimeSpan.FromSeconds(5));
    // The server's own handshake lines (a limit refused a client after its handshake, a session that could not start):
    // clients can cause them in a loop. The listener limits its lines apart; ClientRefused and the metrics see every one.
    private readonly LogRateLimit _handshakeLog = new(10, TimeSpan.FromSeconds(5));
    // A client reaching MaxConcurrentCallsPerClient (its calls queue), or its queue's bound (a call is refused): a client
    // causes either at will, so each is limited apart (a queue line must not hide a refusal).
    private readonly LogRateLimit _callQueuedLog = new(10, TimeSpan.FromSeconds(5));
    private readonly LogRateLimit _callRefusedLog = new(10, TimeSpan.FromSeconds(5));
    private readonly HandlerRegistry _registry;
    private readonly ServerWorkerPool _pool;
    private readonly ServerAcceptLoop _accept;
    private readonly PageRangeListener _listener;
    private readonly MemoryPressureMonitor? _monitor;
    private readonly Lock _sessionsLock = new();
    private readonly Dictionary<long, ClientSession> _sessions = [];
    private readonly Dictionary<uint, int> _clientsPerUid = [];
    private readonly CancellationTokenSource _callsCancelled = new();
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Completed by the first token of any StopAsync caller that fires: the grace period for calls in flight is over. So
    // a DisposeAsync (or a stop with a shorter budget) during a graceful stop ends it, instead of waiting for it.
    private readonly TaskCompletionSource _graceOver = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource? _drained;
    private long _nextClientId;
    private int _inFlight;
    private volatile bool _stopping;
    private int _stopStarted;

    private PageRangeServer(string name, PageRangeServerOptions options, HandlerRegistry registry, PageRangeListener listener)
    {
        Name = name;
        _options = options;
        _logger = PageRangeLog.CreateLogger(options.ConnectionOptions.LoggerFactory, PageRangeLogEvents.ServerCategory);
        _registry = registry;
        _listener = listener;
        _listener.HandshakeFailed += OnHandshakeFailed;
        _pool = new ServerWorkerPool(name, options.MinThreads, options.MaxThreads, options.IdleThreadTimeout, Run, OnWorkerStartFailed);
        _accept = new ServerAcceptLoop(listener, AdmitAsync, OnAcceptFailed);
        // Refuse over a limit before the handshake maps anything; AdmitAsync checks again once the handshake is done,
        // exactly, because two clients may pass this early check at the same time.
        _listener.Admit = AdmitEarly;
        // The listener's own limits (a uid's or a process's share of its handshakes) refuse before AdmitEarly is asked:
        // the same event and metric for them, so a subscriber sees every refusal, whichever limit made it.
        _listener.ShareRefused = OnShareRefused;
        if (options.StartShrinkerMonitor && Shrinker.Shared.Monitor is null)
        {
            try
            {
                _monitor = Shrinker.Shared.StartMonitor(options.ShrinkerOptions);
            }
            catch (InvalidOperationException)
            {
                // Another part of the process started it meanwhile: one monitor serves every region, ours included.
            }
        }
    }

    /// <summary>Raised when a client completed its handshake and was admitted.</summary>
    public event EventHandler<ClientConnectedEventArgs>? ClientConnected;

    /// <summary>Raised when a client's connection ended, with the reason; the server goes on serving the others.</summary>
    public event EventHandler<ClientDisconnectedEventArgs>? ClientDisconnected;

    /// <summary>
    /// Raised when a limit refused a client; the reason names the limit: the server's
    /// (<see cref="PageRangeServerOptions.MaxClients"/>, <see cref="PageRangeServerOptions.MaxClientsPerUid"/>, a stop)
    /// or its listener's share of the handshakes in progress (<see cref="PageRangeOptions.MaxHandshakesPerUid"/>,
    /// <see cref="PageRangeOptions.MaxHandshakesPerProcess"/>). Refused before its handshake (the usual case), the client
    /// also shows in <see cref="HandshakeFailed"/>; the client itself learns only that it was refused.
    /// </summary>
    public event EventHandler<ClientRefusedEventArgs>? ClientRefused;

    /// <summary>Raised when a process that connected failed its handshake (refused uid, bad hello, silent, gone).</summary>
    public event EventHandler<HandshakeFailedEventArgs>? HandshakeFailed;

    /// <summary>Raised when a handler threw an unexpected exception (the caller got <see cref="CallStatus.Internal"/>).</summary>
    public event EventHandler<CallFailedEventArgs>? CallFailed;

    /// <summary>The name clients connect to.</summary>
    public string Name { get; }

    /// <summary>Clients connected now.</summary>
    public int ClientCount
    {
        get
        {
            lock (_sessionsLock)
            {
                return _sessions.Count;
            }
        }
    }

    /// <summary>The clients connected now (a snapshot).</summary>
    public IReadOnlyList<ClientInfo> Clients
    {
        get
        {
            lock (_sessionsLock)
            {
                return [.. _sessions.Values.Select(static session => session.Info)];
            }
        }
    }

    /// <summary>The worker pool's live threads.</summary>
    public int ThreadCount => _pool.ThreadCount;

    /// <summary>The most worker threads alive at once so far (never more than <see cref="PageRangeServerOptions.MaxThreads"/>;
    /// handlers run inline on the clients' receiving threads are not counted).</summary>
    public int PeakThreadCount => _pool.PeakThreadCount;

    /// <summary>Calls and oneway messages being handled or waiting for a worker now, for every client together.</summary>
    public int InFlightCalls => Volatile.Read(ref _inFlight);

    /// <summary>Starts a server on <paramref name="name"/> with the default options.</summary>
    /// <inheritdoc cref="Start(string, PageRangeServerOptions?, Action{PageRangeServerBuilder})"/>
    public static PageRangeServer Start(string name, Action<PageRangeServerBuilder> configure) => Start(name, null, configure);

    /// <summary>Registers the handlers, listens on <paramref name="name"/> and starts accepting clients.</summary>
    /// <param name="name">The name clients connect to (<see cref="PageRangeConnection.ConnectAsync"/>).</param>
    /// <param name="options">The server's options; null for the defaults. Copied.</param>
    /// <param name="configure">Maps codes to handlers.</param>
    /// <returns>The running server. Stop it with <see cref="StopAsync"/> or <see cref="DisposeAsync"/>.</returns>
    /// <exception cref="ArgumentException">The name is invalid, or a code is mapped twice or is <see cref="DiagnosticsCode"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (e.g. <c>MinThreads</c> &gt; <c>MaxThreads</c>).</exception>
    /// <exception cref="PageRangeException">Another listener already has the name.</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    public static PageRangeServer Start(string name, PageRangeServerOptions? options, Action<PageRangeServerBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        PageRangeServerOptions copy = (options ?? new PageRangeServerOptions()).Clone();
        copy.Validate();
        var builder = new PageRangeServerBuilder();
        configure(builder);
        var self = new StrongBox<PageRangeServer?>();
        if (copy.EnableDiagnostics)
        {
            builder.AddReserved(DiagnosticsHandler(self));
        }
        HandlerRegistry registry = builder.Build();
        PageRangeListener listener = PageRangeListener.Listen(name, copy.ConnectionOptions);
        PageRangeServer? server = null;
        try
        {
            server = new PageRangeServer(name, copy, registry, listener);
            self.Value = server;
            server._pool.Start();
            server._accept.Start();
            return server;
        }
        catch
        {
            // The name is bound: give it back, or a retry in this process would find it taken until the listener's
            // finalizer ran (found by review: a start that threw kept it).
            if (server is null)
            {
                listener.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            else
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            throw;
        }
    }

    /// <summary>
    /// Stops the server: stops accepting at once, answers new calls with <see cref="CallStatus.Unavailable"/>, lets the
    /// calls in flight finish until <paramref name="cancellationToken"/> fires, then cancels them (handlers see
    /// <see cref="CallContext.CancellationToken"/>), and closes every client, which sees a <see cref="PeerDiedException"/>
    /// whose <see cref="PeerDiedException.PeerReason"/> is "the server is shutting down".
    /// </summary>
    /// <param name="cancellationToken">Ends the grace period for calls in flight; already cancelled, they are cancelled at once.</param>
    /// <returns>Completes when every client is closed. A second call waits for the first, and its token ends the first's
    /// grace period too (a <see cref="DisposeAsync"/> during a graceful stop cancels the calls still in flight).</returns>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        using CancellationTokenRegistration endsGrace = cancellationToken.Register(
            static state => ((TaskCompletionSource)state!).TrySetResult(), _graceOver);
        if (Interlocked.Exchange(ref _stopStarted, 1) != 0)
        {
            await _stopped.Task.ConfigureAwait(false);
            return;
        }
        try
        {
            await StopCoreAsync().ConfigureAwait(false);
        }
        finally
        {
            _stopped.TrySetResult();
        }
    }

    /// <summary>Stops the server at once (<see cref="StopAsync"/> with no grace period). Always returns.</summary>
    public async ValueTask DisposeAsync()
    {
        using var now = new CancellationTokenSource();
        await now.CancelAsync().ConfigureAwait(false);
        await StopAsync(now.Token).ConfigureAwait(false);
    }

    private async Task StopCoreAsync()
    {
        TaskCompletionSource drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_sessionsLock)
        {
            // The signal first: a dispatch that sees the stop (a volatile load) sees the signal too.
            _drained = drained;
            _stopping = true;
        }
        // A full fence between the store of _stopping and the load of the count, as Dispatch has between its increment
        // and its load of _stopping: one of the two sees the other (the lock's exit is only a release).
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _inFlight) == 0)
        {
            drained.TrySetResult();
        }
        // Calls queued behind their client's limit have not started: answered now, as new calls are, rather than run in
        // the grace period (a call that takes a slot from here on is answered so too: TryRunQueued sees the stop).
        ClientSession[] queuing;
        lock (_sessionsLock)
        {
            queuing = [.. _sessions.Values.Where(static session => session.CallLimit.Queued != 0)];
        }
        foreach (ClientSession session in queuing)
        {
            DropQueuedCalls(session, close: false);
        }
        await _accept.StopAsync().ConfigureAwait(false);

        // The grace period: calls in flight finish on their own until a stop's token fires.
        await Task.WhenAny(drained.Task, _graceOver.Task).ConfigureAwait(false);
        if (!drained.Task.IsCompleted)
        {
            await _callsCancelled.CancelAsync().ConfigureAwait(false);
            // Handlers that honour their token end now; one that ignores it keeps its worker, but does not hold the
            // server: its client is closed below and its late reply fails quietly.
            await Task.WhenAny(drained.Task, Task.Delay(_options.ConnectionOptions.ParkTimeout * 20, CancellationToken.None)).ConfigureAwait(false);
        }

        ClientSession[] sessions;
        lock (_sessionsLock)
        {
            sessions = [.. _sessions.Values];
        }
        // No inline run starts any more (_stopping): the watch's last rescues are not needed either.
        StopWatch();
        foreach (ClientSession session in sessions)
        {
            session.StopReceiving();
        }
        // A session whose thread runs a handler inline that ignores its token ends only when that handler returns: its
        // client is closed now instead (as a worker's stuck handler's client is, by its session's end), and the stop does
        // not wait for that thread. No inline run starts any more (_stopping), so one not seen here ends its loop itself.
        await Task.WhenAll(sessions.Select(session => session.InlineSince != 0
            ? session.Connection.CloseAsync(StoppingReason).AsTask()
            : session.Completion)).ConfigureAwait(false);

        _pool.Stop();
        await Task.WhenAny(_pool.Completion, Task.Delay(_options.ConnectionOptions.ParkTimeout * 20, CancellationToken.None)).ConfigureAwait(false);
        _pool.Dispose();
        _monitor?.Dispose();
        _listener.HandshakeFailed -= OnHandshakeFailed;
    }

    /// <summary>A worker could not start (a thread or pid limit, which clients opening connections can help reach): logged, rate-limited.</summary>
    private void OnWorkerStartFailed(Exception error)
    {
        if (_logger.IsEnabled(LogLevel.Warning) && _workerStartFailedLog.TryTake(out long notLoggedBefore))
        {
            PageRangeLog.WorkerThreadStartFailed(_logger, error, Name, _pool.ThreadCount, notLoggedBefore);
        }
    }

    /// <summary>The listener's admission hook: refuses a peer at once if a limit is reached now.</summary>
    private string? AdmitEarly(Interop.PeerCredentials peer)
    {
        string? refusal;
        lock (_sessionsLock)
        {
            refusal = CheckLimitsUnsynchronized(peer.Uid);
        }
        if (refusal is not null)
        {
            PageRangeMetrics.RecordServerClientRefused();
            Raise(ClientRefused, new ClientRefusedEventArgs(peer.Pid, peer.Uid, peer.Gid, refusal));
        }
        return refusal;
    }

    /// <summary>The listener refused a peer beyond its uid's or its process's share of the handshakes.</summary>
    private void OnShareRefused(Interop.PeerCredentials peer, string refusal)
    {
        PageRangeMetrics.RecordServerClientRefused();
        Raise(ClientRefused, new ClientRefusedEventArgs(peer.Pid, peer.Uid, peer.Gid, refusal));
    }

    private string? CheckLimitsUnsynchronized(uint uid)
    {
        _clientsPerUid.TryGetValue(uid, out int ofUid);
        return _stopping ? "the server is stopping"
            : _sessions.Count >= _options.MaxClients ? $"MaxClients reached: {_sessions.Count} of {_options.MaxClients} clients are connected"
            : ofUid >= _options.MaxClientsPerUid ? $"MaxClientsPerUid reached: uid {uid} has {ofUid} of {_options.MaxClientsPerUid} clients connected"
            : null;
    }

    /// <summary>Admits a connection that completed its handshake, or refuses it if a limit says so.</summary>
    private async Task AdmitAsync(PageRangeConnection connection)
    {
        string? refusal = null;
        ClientSession? session = null;
        lock (_sessionsLock)
        {
            refusal = CheckLimitsUnsynchronized(connection.PeerUid);
            if (refusal is null)
            {
                _clientsPerUid.TryGetValue(connection.PeerUid, out int ofUid);
                var info = new ClientInfo(++_nextClientId, connection.PeerPid, connection.PeerUid, connection.PeerGid, DateTimeOffset.UtcNow);
                session = new ClientSession(this, connection, info, dedicatedThread: _options.ConnectionOptions.WaitStrategy != WaitStrategy.BusySpin,
                    new ClientCallLimiter(_options.MaxConcurrentCallsPerClient, _options.MaxQueuedCallsPerClient));
                _sessions.Add(info.Id, session);
                _clientsPerUid[connection.PeerUid] = ofUid + 1;
            }
        }
        if (session is null)
        {
            PageRangeMetrics.RecordServerClientRefused();
            // The limit goes to the server's log (as the listener logs an early refusal), never to the refused peer.
            if (_logger.IsEnabled(LogLevel.Warning) && _handshakeLog.TryTake(out long notLoggedBefore))
            {
                PageRangeLog.HandshakeRefused(_logger, Name, connection.PeerPid, connection.PeerUid, refusal!, notLoggedBefore);
            }
            Raise(ClientRefused, new ClientRefusedEventArgs(connection.PeerPid, connection.PeerUid, connection.PeerGid, refusal!));
            // The refused peer learns only that it was refused; the limit is the server's business.
            await connection.CloseAsync(RefusedReason).ConfigureAwait(false);
            return;
        }
        PageRangeMetrics.RecordServerClients(1);
        PageRangeLog.ClientConnected(_logger, Name, session.Info.Pid, session.Info.Uid);
        Raise(ClientConnected, new ClientConnectedEventArgs(session.Info));
        try
        {
            // binder's transaction stack: a worker waiting in a call back into this client runs the client's calls of the
            // same chain itself, so A -> B -> A -> B needs one thread on each side.
            connection.SetNestedCallHandler(transaction => RunNested(session, transaction));
            // A client that stops reading its replies must not hold the workers every client shares: a reply waits for
            // room at most ReplyRoomTimeout, then the client is closed.
            connection.SetReplyRoomLimit(_options.ReplyRoomTimeout, _ => OnStoppedReading(session));
            SessionStartingForTest?.Invoke();
            session.Start();
        }
#pragma warning disable CA1031 // A session that could not start (no thread at a pid or memory limit) ends alone: the accept loop goes on.
        catch (Exception error)
#pragma warning restore CA1031
        {
            // It was counted and announced: it ends as any session does (closed, forgotten, reported), or it stayed
            // counted against MaxClients for the server's life, and the error ended the accept loop.
            if (_logger.IsEnabled(LogLevel.Warning) && _handshakeLog.TryTake(out long notLoggedBefore))
            {
                PageRangeLog.HandshakeFailed(_logger, error, Name, session.Info.Pid, "the client's session could not start", notLoggedBefore);
            }
            session.Dispose();
            await OnSessionEndedAsync(session, ClientDisconnectReason.Failed, error).ConfigureAwait(false);
        }
    }

    /// <summary>Runs just before an admitted client's session starts: a test throws from it, as a thread start at a pid
    /// limit does.</summary>
    internal Action? SessionStartingForTest { get; set; }

    private void OnStoppedReading(ClientSession session)
    {
        if (session.StopForNotReading())
        {
            PageRangeLog.ClientStoppedReading(_logger, Name, session.Info.Pid, _options.ReplyRoomTimeout.TotalMilliseconds);
        }
    }

    /// <summary>A session's receive loop ended: close its connection, forget it, report it.</summary>
    internal async Task OnSessionEndedAsync(ClientSession session, ClientDisconnectReason reason, Exception? cause)
    {
        // Its queued calls will never run: answered while the connection is still open (if the client is alive), freed,
        // counted out; nothing is queued again (a rescue's late receive finds the session closed).
        DropQueuedCalls(session, close: true);
        try
        {
            if (reason is ClientDisconnectReason.ServerStopping or ClientDisconnectReason.StoppedReading)
            {
                // Told why: the client sees a PeerDiedException with this reason.
                await session.Connection.CloseAsync(reason == ClientDisconnectReason.ServerStopping ? StoppingReason : StoppedReadingReason)
                    .ConfigureAwait(false);
            }
            else
            {
                await session.Connection.DisposeAsync().ConfigureAwait(false);
            }
        }
        finally
        {
            // Whatever the close threw, the session is over: a client left counted would never be forgotten.
            lock (_sessionsLock)
            {
                _sessions.Remove(session.Info.Id);
                uint uid = session.Info.Uid;
                if (_clientsPerUid.TryGetValue(uid, out int count))
                {
                    if (count <= 1)
                    {
                        _clientsPerUid.Remove(uid);
                    }
                    else
                    {
                        _clientsPerUid[uid] = count - 1;
                    }
                }
            }
        }
        PageRangeMetrics.RecordServerClients(-1);
        PageRangeMetrics.RecordServerClientDisconnected(reason switch
        {
            ClientDisconnectReason.PeerClosed => "peer_closed",
            ClientDisconnectReason.ProtocolViolation => "protocol_violation",
            ClientDisconnectReason.ServerStopping => "server_stopping",
            ClientDisconnectReason.StoppedReading => "stopped_reading",
            _ => "failed",
        });
        if (_logger.IsEnabled(LogLevel.Debug))
        {
            // The cause may quote the peer (its goodbye, a violation's values): peer text.
            PageRangeLog.ClientDisconnected(_logger, Name, session.Info.Pid,
                cause is null ? reason.ToString() : $"{reason}: {PeerText.Sanitize(cause.Message)}");
        }
        Raise(ClientDisconnected, new ClientDisconnectedEventArgs(session.Info, reason, cause, session.Calls, session.Connected));
    }

    private void OnHandshakeFailed(object? sender, HandshakeFailedEventArgs e)
    {
        PageRangeMetrics.RecordServerHandshakeFailed();
        Raise(HandshakeFailed, e);
    }

    private void OnAcceptFailed(Exception error) => OnHandshakeFailed(this, new HandshakeFailedEventArgs(error));

    /// <summary>The rate limit of the server's own handshake lines; tests shorten its window.</summary>
    internal LogRateLimit HandshakeLogForTest => _handshakeLog;

    /// <summary>The server's listener (tests reach its hooks).</summary>
    internal PageRangeListener ListenerForTest => _listener;

    private void Raise<T>(EventHandler<T>? handler, T args)
        where T : EventArgs
    {
        if (handler is null)
        {
            return;
        }
        foreach (EventHandler<T> each in handler.GetInvocationList().Cast<EventHandler<T>>())
        {
            try
            {
                each(this, args);
            }
#pragma warning disable CA1031 // A subscriber's bug must not end an accept loop, a session or a worker: it only loses its own event.
            catch (Exception)
#pragma warning restore CA1031
            {
            }
        }
    }
}
