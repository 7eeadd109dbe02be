using PageRange.Transport;

namespace PageRange.Server;

/// <summary>
/// One client's connection inside a server: receives its transactions and hands each to the worker pool. Two-way calls
/// are handed on as they arrive (so they run concurrently); the connection releases the next oneway message only when
/// the previous one is disposed, which the dispatcher does when its handler returns (binder's oneway rule).
/// </summary>
internal sealed class ClientSession : IDisposable
{
    private readonly PageRangeServer _server;
    private readonly CancellationTokenSource _stopReceiving = new();
    private readonly long _started = Environment.TickCount64;
    private long _calls;
    private int _inFlight;
    private int _stoppedReading;

    internal ClientSession(PageRangeServer server, PageRangeConnection connection, ClientInfo info)
    {
        _server = server;
        Connection = connection;
        Info = info;
    }

    internal ClientInfo Info { get; }

    internal PageRangeConnection Connection { get; }

    /// <summary>Calls and oneway messages received from this client.</summary>
    internal long Calls => Interlocked.Read(ref _calls);

    /// <summary>This client's handlers running or queued now.</summary>
    internal int InFlight => Volatile.Read(ref _inFlight);

    internal TimeSpan Connected => TimeSpan.FromMilliseconds(Environment.TickCount64 - _started);

    /// <summary>Completes once the session ended and the server reported it.</summary>
    internal Task Completion { get; private set; } = Task.CompletedTask;

    internal void Start() => Completion = Task.Run(ReceiveLoopAsync);

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

    internal void OnCompleted() => Interlocked.Decrement(ref _inFlight);

    /// <summary>Frees the stop signal; the receive loop calls this when it ends.</summary>
    public void Dispose() => _stopReceiving.Dispose();

    private async Task ReceiveLoopAsync()
    {
        ClientDisconnectReason reason;
        Exception? cause = null;
        try
        {
            while (true)
            {
                Transaction transaction = await Connection.ReceiveAsync(_stopReceiving.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _calls);
                _server.Dispatch(this, transaction);
            }
        }
        catch (OperationCanceledException) when (_stopReceiving.IsCancellationRequested)
        {
            reason = Volatile.Read(ref _stoppedReading) != 0 ? ClientDisconnectReason.StoppedReading : ClientDisconnectReason.ServerStopping;
        }
        catch (ProtocolViolationException violation)
        {
            reason = ClientDisconnectReason.ProtocolViolation;
            cause = violation;
        }
        catch (PeerDiedException died)
        {
            // The control socket may have ended because the client broke the protocol on it (a descriptor after the
            // handshake, a malformed frame): the death's cause says so.
            reason = died.InnerException is ProtocolViolationException ? ClientDisconnectReason.ProtocolViolation : ClientDisconnectReason.PeerClosed;
            cause = died;
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException or InvalidOperationException)
        {
            reason = ClientDisconnectReason.Failed;
            cause = error;
        }
        Dispose();
        await _server.OnSessionEndedAsync(this, reason, cause).ConfigureAwait(false);
    }
}
