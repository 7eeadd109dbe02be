using Grpc.Core;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// One streaming call on the server: the client's messages (arriving as frames, read by the handler through
/// <see cref="IAsyncStreamReader{T}"/>) and the handler's messages (sent as frames under the client's credits).
/// </summary>
internal sealed class GrpcServerStream<TRequest, TResponse> : IGrpcServerStream, IGrpcMessageSink, IAsyncStreamReader<TRequest>, IServerStreamWriter<TResponse>
    where TRequest : class
    where TResponse : class
{
    private readonly PageRangeConnection _connection;
    private readonly ulong _streamId;
    private readonly Method<TRequest, TResponse> _method;
    private readonly bool _readsRequests;
    private readonly CancellationToken _callCancelled;
    private readonly GrpcInbox<TRequest> _inbox;
    private readonly GrpcCreditGate _gate = new(GrpcWire.WindowMessages, GrpcWire.WindowBytes);
    private readonly GrpcFrameWriter _frames;
    private uint _sent;

    internal GrpcServerStream(PageRangeConnection connection, ulong streamId, Method<TRequest, TResponse> method, bool readsRequests, CancellationToken callCancelled)
    {
        _connection = connection;
        _streamId = streamId;
        _method = method;
        _readsRequests = readsRequests;
        _callCancelled = callCancelled;
        _inbox = new GrpcInbox<TRequest>((messages, bytes) => GrpcFrames.SendCredit(connection, streamId, messages, bytes));
        // The call's token fires at its deadline too: the writer's waits for room end there.
        _frames = new GrpcFrameWriter(connection, streamId, null, callCancelled);
    }

    /// <summary>Frames of messages sent (tests look).</summary>
    internal int FramesSent => _frames.FramesSent;

    /// <summary>Set before the handler runs.</summary>
    internal PageRangeServerCallContext? Context { get; set; }

    /// <summary>Messages the handler sent.</summary>
    internal uint MessagesSent => Volatile.Read(ref _sent);

    /// <inheritdoc/>
    public TRequest Current => _inbox.Current ?? throw new InvalidOperationException("No message: call MoveNext first.");

    /// <inheritdoc/>
    public WriteOptions? WriteOptions { get; set; }

    /// <summary>Lets the client start writing: the whole window.</summary>
    internal void GrantInitialCredit() => GrpcFrames.SendCredit(_connection, _streamId, GrpcWire.WindowMessages, GrpcWire.WindowBytes);

    /// <inheritdoc/>
    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return await _inbox.MoveNextAsync(_callCancelled).ConfigureAwait(false);
        }
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _callCancelled);
        return await _inbox.MoveNextAsync(linked.Token).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public Task WriteAsync(TResponse message) => WriteAsync(message, CancellationToken.None);

    /// <inheritdoc/>
    /// <remarks>
    /// Completes as soon as the message is serialized into the stream's open frame (in the client's region); the frame
    /// goes out with the messages written after it (see <see cref="GrpcFrameWriter"/>). It waits only for credit, and
    /// then sends what it holds first.
    /// </remarks>
    public Task WriteAsync(TResponse message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        try
        {
            if (!_gate.TryTake())
            {
                return WriteAfterCreditAsync(message, cancellationToken);
            }
            WriteTaken(message);
            return Task.CompletedTask;
        }
        catch (Exception error)
        {
            return Task.FromException(error);
        }
    }

    private async Task WriteAfterCreditAsync(TResponse message, CancellationToken cancellationToken)
    {
        // The reader grants credit as it reads: what this stream holds must reach it first.
        _frames.Flush();
        if (!cancellationToken.CanBeCanceled || cancellationToken == _callCancelled)
        {
            await _gate.TakeAsync(_callCancelled).ConfigureAwait(false);
        }
        else
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _callCancelled);
            await _gate.TakeAsync(linked.Token).ConfigureAwait(false);
        }
        WriteTaken(message);
    }

    private void WriteTaken(TResponse message)
    {
        Context?.MarkHeadersSent();
        _frames.WriteWithCredit(_gate, _method.ResponseMarshaller, message);
        Interlocked.Increment(ref _sent);
    }

    /// <summary>Sends the response headers as a frame (before any message: frames keep their order).</summary>
    internal Task SendHeadersAsync(Metadata headers)
    {
        _frames.Flush();
        int size = GrpcFrames.HeadLength + GrpcMetadataCodec.GetSize(headers);
        byte[] frame = new byte[size];
        GrpcFrames.WriteHead(frame, GrpcFrameKind.Headers, _streamId);
        var writer = new GrpcWriter(frame.AsSpan(GrpcFrames.HeadLength));
        GrpcMetadataCodec.Write(ref writer, headers);
        return _connection.SendOnewayAsync(GrpcWire.FrameCode, frame).AsTask();
    }

    /// <summary>The call ended: reads end, writes fail.</summary>
    internal void End()
    {
        _inbox.End(new InvalidOperationException("The call is complete."));
        _gate.Fail(new InvalidOperationException("Can't write the message because the call is complete."));
        // Every message goes out before the reply that follows this.
        _frames.Close(send: true);
    }

    /// <summary>Deserializes one message into the inbox.</summary>
    /// <returns>False if the stream's reads ended (a message that does not deserialize).</returns>
    /// <exception cref="ProtocolViolationException">Past the window.</exception>
    public bool Deliver(ReadOnlyMemory<byte> body)
    {
        TRequest message;
        try
        {
            message = GrpcDeserializationContext.Deserialize(_method.RequestMarshaller, body, "request");
        }
        catch (RpcException error)
        {
            _inbox.End(error);
            return false;
        }
        if (!_inbox.TryAdd(message, body.Length))
        {
            throw GrpcReader.Violation($"stream {_streamId} got a message past the window its reader granted.");
        }
        return true;
    }

    /// <inheritdoc/>
    public void OnFrame(GrpcFrameKind kind, ReadOnlyMemory<byte> body)
    {
        switch (kind)
        {
            case GrpcFrameKind.Message when _readsRequests:
                Deliver(body);
                return;
            case GrpcFrameKind.Messages when _readsRequests:
                GrpcFrames.DeliverMessages(body, this);
                return;
            case GrpcFrameKind.HalfClose when _readsRequests:
                _inbox.End();
                return;
            case GrpcFrameKind.Credit:
                (int messages, int bytes) = GrpcFrames.ReadCredit(body.Span);
                if (!_gate.TryGrant(messages, bytes))
                {
                    throw GrpcReader.Violation($"stream {_streamId} was granted more credit than it used.");
                }
                return;
            default:
                throw GrpcReader.Violation($"a client sent a {kind} frame on stream {_streamId} of {_method.FullName}.");
        }
    }
}
