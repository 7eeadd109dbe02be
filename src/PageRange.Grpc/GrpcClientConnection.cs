using System.Collections.Concurrent;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// A client's connection as the gRPC invoker uses it: calls go out on it, and a reader takes what the server sends on
/// its own (stream frames) and hands each frame to its stream by id. Calls the server makes into the client are
/// answered <see cref="CallStatus.Unimplemented"/>.
/// </summary>
internal sealed class GrpcClientConnection : IAsyncDisposable
{
    private readonly bool _owned;
    private readonly ConcurrentDictionary<ulong, IGrpcClientStream> _streams = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;
    private long _nextStreamId;
    private long _messageFrames;
    private int _disposed;

    internal GrpcClientConnection(PageRangeConnection connection, bool owned)
    {
        Connection = connection;
        _owned = owned;
        _reader = Task.Run(ReadLoopAsync);
    }

    internal PageRangeConnection Connection { get; }

    internal bool IsAlive => Connection.IsPeerAlive && !_reader.IsCompleted;

    /// <summary>Frames of messages received so far (tests look: a fast writer packs several messages per frame).</summary>
    internal long MessageFramesReceived => Volatile.Read(ref _messageFrames);

    /// <summary>Streams open now (tests look).</summary>
    internal int OpenStreams => _streams.Count;

    /// <summary>Registers a stream under a new id, before its opening call goes out (so no frame of it is missed).</summary>
    internal ulong Register(IGrpcClientStream stream)
    {
        ulong id = (ulong)Interlocked.Increment(ref _nextStreamId);
        _streams[id] = stream;
        if (_reader.IsCompleted)
        {
            _streams.TryRemove(id, out _);
            stream.OnConnectionLost(new PeerDiedException($"The connection to '{Connection.Name}' has ended."));
        }
        return id;
    }

    internal void Unregister(ulong streamId) => _streams.TryRemove(streamId, out _);

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
        await _reader.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task ReadLoopAsync()
    {
        Exception? end = null;
        try
        {
            while (true)
            {
                using Transaction transaction = await Connection.ReceiveAsync(_stop.Token).ConfigureAwait(false);
                if (transaction.Code != GrpcWire.FrameCode || !transaction.IsOneway)
                {
                    if (transaction.IsTwoWay)
                    {
                        transaction.ReplyError(CallStatus.Unimplemented, "A gRPC client over PageRange serves no calls.");
                    }
                    continue;
                }
                try
                {
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
                catch (ProtocolViolationException violation)
                {
                    // The server broke the protocol: this connection ends; the invoker makes a new one for later calls.
                    Connection.ClosePeerViolation(violation);
                    end = violation;
                    break;
                }
            }
        }
        catch (Exception error) when (error is OperationCanceledException or PageRangeException or ObjectDisposedException or InvalidOperationException)
        {
            end = error;
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
}
