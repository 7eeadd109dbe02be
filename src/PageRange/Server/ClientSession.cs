using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// One client's connection inside a server: receives its transactions and hands each to the worker pool, or runs a fast
/// handler itself when nothing else of the client waits (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>; a
/// run held past <see cref="PageRangeServer.StuckAfter"/> gets a rescue receiving meanwhile). Two-way calls are handed
/// on as they arrive (so they run concurrently), up to <see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/>
/// at once; the next wait in <see cref="CallLimit"/>'s queue while the session goes on receiving. The connection releases
/// the next oneway message only when the previous one is disposed, which the dispatcher does when its handler returns
/// (binder's oneway rule).
/// </summary>
/// <remarks>
/// The receiving runs on a thread of the session's own that reads the connection's ring itself (a blocking
/// <see cref="PageRangeConnection.Receive"/>), so a call reaches a worker with one wake: the ring's doorbell wakes this
/// thread, which queues the call to the pool. An asynchronous receive would take two more steps (the connection's
/// background reader wakes, then completes the receive on the thread pool, which queues the call), each a thread wake
/// on a parked machine (~10-20 µs), and would stall whenever the process's thread pool is starved. With
/// <see cref="WaitStrategy.BusySpin"/> the session keeps the asynchronous receive instead: a dedicated thread per client
/// spinning on its ring would hold a core per client, and the background reader never busy-spins.
/// </remarks>
internal sealed class ClientSession : IDisposable
{
    private readonly PageRangeServer _server;
    private readonly CancellationTokenSource _stopReceiving = new();
    private readonly long _started = Environment.TickCount64;
    private long _calls;
    private int _inFlight;
    private int _stoppedReading;

    private readonly bool _dedicatedThread;

    // The inline run in progress on the receiving thread (its start, 0 if none), and the rescue receiving meanwhile.
    private long _inlineSince;
    private int _rescuing;
    private const int RescueNone = 0;
    private const int RescueRunning = 1;
    // The client cannot be received from any more (its end, a stop): no rescue is started again.
    private const int RescueOver = 2;
    private CancellationTokenSource? _rescue;

    internal ClientSession(PageRangeServer server, PageRangeConnection connection, ClientInfo info, bool dedicatedThread, ClientCallLimiter callLimit)
    {
        _server = server;
        CallLimit = callLimit;
        _dedicatedThread = dedicatedThread;
        Connection = connection;
        Info = info;
    }

    internal ClientInfo Info { get; }

    /// <summary>This client's running two-way calls and those waiting for one of them to end.</summary>
    internal ClientCallLimiter CallLimit { get; }

    internal PageRangeConnection Connection { get; }

    /// <summary>Calls and oneway messages received from this client.</summary>
    internal long Calls => Interlocked.Read(ref _calls);

    /// <summary>This client's handlers running or queued now.</summary>
    internal int InFlight => Volatile.Read(ref _inFlight);

    internal TimeSpan Connected => TimeSpan.FromMilliseconds(Environment.TickCount64 - _started);

    /// <summary>Completes once the session ended and the server reported it.</summary>
    internal Task Completion { get; private set; } = Task.CompletedTask;

    internal void Start()
    {
        if (!_dedicatedThread)
        {
            Completion = Task.Run(ReceiveLoopAsync);
            return;
        }
        var ended = new TaskCompletionSource<Task>(TaskCreationOptions.RunContinuationsAsynchronously);
        Completion = ended.Task.Unwrap();
        var thread = new Thread(() =>
        {
            (ClientDisconnectReason reason, Exception? cause) = ReceiveLoop();
            Dispose();
            Task reported;
            try
            {
                reported = _server.OnSessionEndedAsync(this, reason, cause);
            }
#pragma warning disable CA1031 // Handed to Completion, as the asynchronous loop's task would carry it.
            catch (Exception error)
#pragma warning restore CA1031
            {
                reported = Task.FromException(error);
            }
            ended.SetResult(reported);
        })
        {
            IsBackground = true,
            Name = $"PageRange session pid {Info.Pid}",
        };
        thread.Start();
    }

    /// <summary>Stops taking this client's transactions (the server is stopping); the loop then ends the session.</summary>
    internal void StopReceiving()
    {
        try
        {
            _stopReceiving.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The session ended on its own meanwhile.
        }
    }

    /// <summary>
    /// A reply to this client found no room within the server's limit: ends the session with
    /// <see cref="ClientDisconnectReason.StoppedReading"/>. Called on the replying worker, so the ending runs elsewhere.
    /// </summary>
    /// <returns>Whether this was the first such report.</returns>
    internal bool StopForNotReading()
    {
        if (Interlocked.Exchange(ref _stoppedReading, 1) != 0)
        {
            return false;
        }
        // Not inline: cancelling runs the receive loop's continuation, which closes the connection, and the worker
        // reporting this is inside a send on that very connection.
        ThreadPool.UnsafeQueueUserWorkItem(static session => session.StopReceiving(), this, preferLocal: false);
        return true;
    }

    /// <summary>Whether this client stopped reading its replies (its connection is being closed).</summary>
    internal bool StoppedReading => Volatile.Read(ref _stoppedReading) != 0;

    internal void OnDispatched() => Interlocked.Increment(ref _inFlight);

    /// <summary>When the handler running inline on this session's receiving thread started (<see cref="System.Diagnostics.Stopwatch"/> ticks), 0 if none.</summary>
    internal long InlineSince => Volatile.Read(ref _inlineSince);

    /// <summary>Whether a rescue receives for this session now.</summary>
    internal bool Rescuing => Volatile.Read(ref _rescuing) == RescueRunning;

    /// <summary>Announces an inline run (a full fence: see <see cref="PageRangeServer"/>'s watch).</summary>
    internal void BeginInline(long startedTicks) => Interlocked.Exchange(ref _inlineSince, startedTicks);

    /// <summary>Ends an inline run, and the rescue that received meanwhile, if any.</summary>
    /// <remarks>
    /// The exchange is a full fence before the read of <c>_rescuing</c>; <see cref="TryStartRescue"/> sets that flag with
    /// a fence before it reads <c>_inlineSince</c>: either we see the rescue (and cancel it, or it cancels itself when it
    /// finds its source not yet published), or it sees the run ended and cancels itself.
    /// </remarks>
    internal void EndInline()
    {
        Interlocked.Exchange(ref _inlineSince, 0);
        if (Volatile.Read(ref _rescuing) == RescueRunning)
        {
            CancelRescue(Volatile.Read(ref _rescue));
        }
    }

    /// <summary>
    /// Starts another receiver for this session, on the thread pool, while its receiving thread runs a handler that
    /// lasts: the client's next calls are received and handed to the workers until the run ends.
    /// </summary>
    /// <returns>Whether a rescue was started (none while one runs, or once the session ended).</returns>
    /// <param name="stuckSince">The start of the run the watch found held (a later run gets no rescue from that look).</param>
    internal bool TryStartRescue(long stuckSince)
    {
        if (Interlocked.CompareExchange(ref _rescuing, RescueRunning, RescueNone) != RescueNone)
        {
            // One at a time; none once the client cannot be received from any more (RescueOver).
            return false;
        }
        CancellationTokenSource rescue;
        try
        {
            if (_stopReceiving.IsCancellationRequested)
            {
                // Stopping: the server closes a held session's client itself; nothing more is received.
                Volatile.Write(ref _rescuing, RescueOver);
                return false;
            }
            rescue = CancellationTokenSource.CreateLinkedTokenSource(_stopReceiving.Token);
        }
        catch (ObjectDisposedException)
        {
            // The session ended: nothing to receive.
            Volatile.Write(ref _rescuing, RescueOver);
            return false;
        }
        // A fence before the look at the run: see EndInline.
        Interlocked.Exchange(ref _rescue, rescue);
        if (Volatile.Read(ref _inlineSince) != stuckSince)
        {
            // The run ended meanwhile; its EndInline may have found no source to cancel yet.
            CancelRescue(rescue);
        }
        _ = Task.Run(() => RescueLoopAsync(rescue));
        return true;
    }

    private static void CancelRescue(CancellationTokenSource? rescue)
    {
        if (rescue is null)
        {
            return;
        }
        try
        {
            // Asynchronously: the rescue's receive completes on the pool, not inside the session thread's EndInline.
            _ = rescue.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            // The rescue ended on its own (the session's end) and disposed it.
        }
    }

    private async Task RescueLoopAsync(CancellationTokenSource rescue)
    {
        bool over = false;
        try
        {
            while (!rescue.IsCancellationRequested)
            {
                Transaction transaction = await Connection.ReceiveAsync(rescue.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _calls);
                // To the pool: this receiver must stay free to receive while the session thread is held.
                _server.Dispatch(this, transaction, mayRunInline: false);
            }
        }
        catch (OperationCanceledException) when (rescue.IsCancellationRequested)
        {
            // The run ended (or the server stops): the session thread receives again.
            over = _stopReceiving.IsCancellationRequested;
        }
#pragma warning disable CA1031 // The session's own receive loop sees and reports the end (a death, a violation) once its handler returns.
        catch (Exception)
#pragma warning restore CA1031
        {
            // Nothing more can be received from this client: no rescue again (one per watch tick would fail the same way).
            over = true;
        }
        finally
        {
            Interlocked.Exchange(ref _rescue, null);
            rescue.Dispose();
            Volatile.Write(ref _rescuing, over ? RescueOver : RescueNone);
        }
    }

    internal void OnCompleted() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Frees the stop signal; the receive loop calls this when it ends.</summary>
    public void Dispose() => _stopReceiving.Dispose();

    /// <summary>The dedicated thread's loop: receives until the session ends, and says why it ended.</summary>
    private (ClientDisconnectReason Reason, Exception? Cause) ReceiveLoop()
    {
        try
        {
            while (true)
            {
                // The peer's end (a violation, a death) arrives as the asynchronous receive reports it, even when it
                // released the ring under this thread's wait.
                Transaction transaction = Connection.Receive(_stopReceiving.Token);
                Interlocked.Increment(ref _calls);
                _server.Dispatch(this, transaction);
            }
        }
        catch (Exception error) when (Ended(error, out ClientDisconnectReason reason, out Exception? cause))
        {
            return (reason, cause);
        }
#pragma warning disable CA1031 // Nothing may escape a thread of our own: it would end the process, not the session.
        catch (Exception error)
#pragma warning restore CA1031
        {
            // What the asynchronous loop would leave in its task (and the server's report of the session carries).
            return (ClientDisconnectReason.Failed, error);
        }
    }

    private async Task ReceiveLoopAsync()
    {
        ClientDisconnectReason reason;
        Exception? cause;
        try
        {
            while (true)
            {
                Transaction transaction = await Connection.ReceiveAsync(_stopReceiving.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _calls);
                // Not inline: this loop runs on the thread pool, which a held handler would take from the watch, the
                // rescues and every other busy-spin session (see the remarks above).
                _server.Dispatch(this, transaction, mayRunInline: false);
            }
        }
        catch (Exception error) when (Ended(error, out reason, out cause))
        {
        }
        Dispose();
        await _server.OnSessionEndedAsync(this, reason, cause).ConfigureAwait(false);
    }

    /// <summary>Whether <paramref name="error"/> from a receive ends the session normally, and with which reason.</summary>
    private bool Ended(Exception error, out ClientDisconnectReason reason, out Exception? cause)
    {
        cause = null;
        switch (error)
        {
            case OperationCanceledException when _stopReceiving.IsCancellationRequested:
                reason = Volatile.Read(ref _stoppedReading) != 0 ? ClientDisconnectReason.StoppedReading : ClientDisconnectReason.ServerStopping;
                return true;
            case ProtocolViolationException violation:
                reason = ClientDisconnectReason.ProtocolViolation;
                cause = violation;
                return true;
            case PeerDiedException died:
                // The control socket may have ended because the client broke the protocol on it (a descriptor after the
                // handshake, a malformed frame): the death's cause says so.
                reason = died.InnerException is ProtocolViolationException ? ClientDisconnectReason.ProtocolViolation : ClientDisconnectReason.PeerClosed;
                cause = died;
                return true;
            case PageRangeException or ObjectDisposedException or InvalidOperationException:
                reason = ClientDisconnectReason.Failed;
                cause = error;
                return true;
            default:
                reason = default;
                return false;
        }
    }
}
