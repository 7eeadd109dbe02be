using System.Collections.Concurrent;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// A client's connection as the gRPC invoker uses it: calls go out on it, and a reader takes what the server sends on
/// its own (stream frames) and hands each frame to its stream by id. Calls the server makes into the client are
/// answered <see cref="CallStatus.Unimplemented"/>.
/// </summary>
/// <remarks>
/// The reader runs only while a stream is open. A pending <see cref="PageRangeConnection.ReceiveAsync"/> makes the
/// connection's background thread read the ring all the time, and a blocking unary call then waits for that thread to
/// hand it its reply (a second wake: ~20 µs parked) instead of reading its reply itself. Unary calls need no reader,
/// so with no stream open none runs. The last stream's end stops it (after taking what is queued already); frames that
/// arrive later (a stream cancelled while the server was still writing) wait in our region until the next stream's
/// reader drops them or the connection closes. A server's calls into the client are answered only while a reader runs.
/// </remarks>
internal sealed class GrpcClientConnection : IAsyncDisposable
{
    private readonly bool _owned;
    private readonly ConcurrentDictionary<ulong, IGrpcClientStream> _streams = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _readerLock = new();
    private Task _reader = Task.CompletedTask;
    // The running reader's stop signal, linked to _stop; null while no reader runs. Guarded by _readerLock.
    private CancellationTokenSource? _idle;
    // Why the connection ended, once the reader saw it end; guarded by _readerLock.
    private Exception? _ended;
    private long _nextStreamId;
    private long _messageFrames;
    private long _readerStarts;
    private int _disposed;

    internal GrpcClientConnection(PageRangeConnection connection, bool owned)
    {
        Connection = connection;
        _owned = owned;
    }

    internal PageRangeConnection Connection { get; }

    internal bool IsAlive => Connection.IsPeerAlive && Volatile.Read(ref _ended) is null;

    /// <summary>Frames of messages received so far (tests look: a fast writer packs several messages per frame).</summary>
    internal long MessageFramesReceived => Volatile.Read(ref _messageFrames);

    /// <summary>Streams open now (tests look).</summary>
    internal int OpenStreams => _streams.Count;

    /// <summary>Whether the frame reader runs now (tests look: it runs only while a stream is open).</summary>
    internal bool IsReading
    {
        get
        {
            lock (_readerLock)
            {
                return _idle is not null;
            }
        }
    }

    /// <summary>How many times a reader was started (tests look).</summary>
    internal long ReaderStarts => Interlocked.Read(ref _readerStarts);

    /// <summary>Registers a stream under a new id, before its opening call goes out (so no frame of it is missed).</summary>
    internal ulong Register(IGrpcClientStream stream)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextStreamId);
        Exception? ended;
        lock (_readerLock)
        {
            ended = _ended;
            if (ended is null)
            {
                _streams[id] = stream;
                if (_idle is null)
                {
                    // No reader runs: start one. (One that is stopping sees the new stream and goes on: see ReadLoopAsync.)
                    try
                    {
                        _idle = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                    }
                    catch (ObjectDisposedException)
                    {
                        _streams.TryRemove(id, out _);
                        ended = new ObjectDisposedException(nameof(GrpcClientConnection));
                    }
                    if (_idle is not null)
                    {
                        Interlocked.Increment(ref _readerStarts);
                        CancellationToken token = _idle.Token;
                        _reader = Task.Run(() => ReadLoopAsync(token));
                    }
                }
            }
        }
        if (ended is not null)
        {
            stream.OnConnectionLost(new PeerDiedException($"The connection to '{Connection.Name}' has ended.", ended));
        }
        return id;
    }

    internal void Unregister(ulong streamId)
    {
        lock (_readerLock)
        {
            if (_streams.TryRemove(streamId, out _) && _streams.IsEmpty)
            {
                // The last stream ended: the reader stops (a stream registered before it notices keeps it going).
                _idle?.Cancel();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_owned)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
        Task reader;
        lock (_readerLock)
        {
            reader = _reader;
        }
        await reader.ConfigureAwait(false);
        lock (_readerLock)
        {
            _stop.Dispose();
        }
    }

    private async Task ReadLoopAsync(CancellationToken idle)
    {
        Exception? end = null;
        try
        {
            while (true)
            {
                Transaction received;
                try
                {
                    received = await Connection.ReceiveAsync(idle).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (idle.IsCancellationRequested && !_stop.IsCancellationRequested)
                {
                    // The last stream ended. What is queued already is taken (late frames of ended streams are
                    // dropped, the server's calls answered) before the reader stops.
                    while (Connection.TryReceive(out Transaction ready))
                    {
                        if (!TakeOrClose(ready, ref end))
                        {
                            break;
                        }
                    }
                    if (end is not null)
                    {
                        break;
                    }
                    lock (_readerLock)
                    {
                        if (_streams.IsEmpty)
                        {
                            _idle!.Dispose();
                            _idle = null;
                            return;
                        }
                        // A stream registered meanwhile: read on, with a fresh signal.
                        _idle!.Dispose();
                        _idle = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                        idle = _idle.Token;
                    }
                    continue;
                }
                if (!TakeOrClose(received, ref end))
                {
                    break;
                }
            }
        }
        catch (Exception error) when (error is OperationCanceledException or PageRangeException or ObjectDisposedException or InvalidOperationException)
        {
            end = error;
        }
        lock (_readerLock)
        {
            _ended = end ?? new ObjectDisposedException(nameof(GrpcClientConnection));
            _idle?.Dispose();
            _idle = null;
        }
        var lost = new PeerDiedException($"The connection to '{Connection.Name}' has ended.", end);
        foreach (KeyValuePair<ulong, IGrpcClientStream> entry in _streams)
        {
            if (_streams.TryRemove(entry.Key, out IGrpcClientStream? stream))
            {
                stream.OnConnectionLost(lost);
            }
        }
    }

    /// <summary>Takes <paramref name="transaction"/> and frees it; false (and the connection closed) if it broke the protocol.</summary>
    private bool TakeOrClose(Transaction transaction, ref Exception? end)
    {
        using (transaction)
        {
            try
            {
                Take(transaction);
                return true;
            }
            catch (ProtocolViolationException violation)
            {
                // The server broke the protocol: this connection ends; the invoker makes a new one for later calls.
                Connection.ClosePeerViolation(violation);
                end = violation;
                return false;
            }
        }
    }

    /// <summary>Hands one transaction from the server to its stream (frames), or answers it (calls).</summary>
    /// <exception cref="ProtocolViolationException">A frame breaks the protocol.</exception>
    private void Take(Transaction transaction)
    {
        if (transaction.Code != GrpcWire.FrameCode || !transaction.IsOneway)
        {
            if (transaction.IsTwoWay)
            {
                transaction.ReplyError(CallStatus.Unimplemented, "A gRPC client over PageRange serves no calls.");
            }
            return;
        }
        (GrpcFrameKind kind, ulong streamId) = GrpcFrames.ReadHead(transaction.Payload);
        if (kind is GrpcFrameKind.Message or GrpcFrameKind.Messages)
        {
            Volatile.Write(ref _messageFrames, _messageFrames + 1);
        }
        if (_streams.TryGetValue(streamId, out IGrpcClientStream? stream))
        {
            stream.OnFrame(kind, transaction.Memory[GrpcFrames.HeadLength..]);
        }
    }
}
