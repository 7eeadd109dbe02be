using Grpc.Core;
using PageRange.Diagnostics;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// A streaming call on the client (server, client or duplex streaming). A two-way PageRange call opens it and its reply
/// carries the status, trailers, how many messages the server sent and (client streaming) the response; the messages
/// travel as frames tagged with the stream's id, under credits, in both directions.
/// </summary>
internal sealed class GrpcClientStreamCall<TRequest, TResponse> : IGrpcClientStream, IGrpcMessageSink, IAsyncStreamReader<TResponse>, IClientStreamWriter<TRequest>
    where TRequest : class
    where TResponse : class
{
    private readonly PageRangeCallInvoker _invoker;
    private readonly Method<TRequest, TResponse> _method;
    private readonly string? _host;
    private readonly CallOptions _options;
    private readonly GrpcCallResult _result = new();
    private readonly CancellationTokenSource _cancel;
    private readonly CancellationToken _callToken;
    private readonly TaskCompletionSource<GrpcClientConnection> _opened = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly GrpcCreditGate _gate = new(0, 0);
    private readonly Lock _lock = new();
    private GrpcInbox<TResponse>? _inbox;
    private GrpcFrameWriter? _frames;
    private GrpcClientConnection? _connection;
    private ulong _streamId;
    private uint _received;
    private uint? _expected;
    private RpcException? _failure;
    private bool _halfClosed;
    private Task<TResponse>? _run;

    internal GrpcClientStreamCall(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options)
    {
        _invoker = invoker;
        _method = method;
        _host = host;
        _options = options;
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken);
        _callToken = _cancel.Token;
    }

    internal IAsyncStreamReader<TResponse> ResponseStream => this;

    internal IClientStreamWriter<TRequest> RequestStream => this;

    internal Task<Metadata> ResponseHeadersAsync => _result.HeadersTask;

    internal Task<TResponse> SingleResponseAsync => _run!;

    /// <summary>Whether the call's linked source was disposed, letting go of the caller's token (tests look).</summary>
    internal bool CancelSourceDisposed
    {
        get
        {
            try
            {
                _ = _cancel.Token;
                return false;
            }
            catch (ObjectDisposedException)
            {
                return true;
            }
        }
    }

    /// <summary>Message credits the writer holds now (tests look).</summary>
    internal int CreditsHeld => _gate.Messages;

    /// <inheritdoc/>
    public TResponse Current => _inbox?.Current ?? throw new InvalidOperationException("No message: call MoveNext first.");

    /// <inheritdoc/>
    public WriteOptions? WriteOptions { get; set; }

    internal void Start(TRequest request, bool hasRequest)
    {
        _run = RunAsync(request, hasRequest);
        if (_method.Type != MethodType.ClientStreaming)
        {
            // Its outcome reaches the application through the reader and GetStatus; nobody awaits this task.
            _ = _run.ContinueWith(static task => _ = task.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
    }

    internal Status GetStatus() => _result.GetStatus();

    internal Metadata GetTrailers() => _result.GetTrailers();

    /// <summary>Cancels the call if it is still running (the server's handler sees its token fire) and lets its stream go.</summary>
    internal void Dispose()
    {
        if (!_result.IsComplete)
        {
            try
            {
                _cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The call ended meanwhile.
            }
        }
        var cancelled = new RpcException(new Status(StatusCode.Cancelled, "The call was disposed."));
        _inbox?.End(cancelled);
        _gate.Fail(cancelled);
        _frames?.Close(send: false);
        Unregister();
        if (_result.IsComplete)
        {
            // Only a complete call lets its source go: a running one may still read the token.
            _cancel.Dispose();
        }
    }

    /// <inheritdoc/>
    public async Task<bool> MoveNext(CancellationToken cancellationToken)
    {
        GrpcInbox<TResponse> inbox;
        try
        {
            await _opened.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            inbox = _inbox!;
            return await inbox.MoveNextAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // As grpc-dotnet: cancelling a read cancels the call.
            Dispose();
            throw new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client."));
        }
    }

    /// <inheritdoc/>
    public Task WriteAsync(TRequest message) => WriteAsync(message, CancellationToken.None);

    /// <inheritdoc/>
    /// <remarks>
    /// Completes once the message is serialized into the stream's open frame (see <see cref="GrpcFrameWriter"/>). As
    /// grpc-dotnet's: once the call is over, the write fails with the call's status (a write waiting for room too), and
    /// cancelling <paramref name="cancellationToken"/> fails the write with <see cref="StatusCode.Cancelled"/> and
    /// cancels the call.
    /// </remarks>
    public Task WriteAsync(TRequest message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (_halfClosed)
        {
            throw new InvalidOperationException("Request stream has already been completed.");
        }
        try
        {
            if (_opened.Task.IsCompletedSuccessfully && !cancellationToken.IsCancellationRequested && !_callToken.IsCancellationRequested && _gate.TryTake())
            {
                WriteTaken(message, cancellationToken);
                return Task.CompletedTask;
            }
        }
        catch (Exception error) when (error is RpcException)
        {
            return Task.FromException(error);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException or TimeoutException or OperationCanceledException)
        {
            // Timeout and cancellation: the deadline passed, or the call ended or was cancelled, or the write was
            // cancelled, while the message waited for room.
            return Task.FromException(WriteFailed(error, cancellationToken));
        }
        return WriteSlowAsync(message, cancellationToken);
    }

    private async Task WriteSlowAsync(TRequest message, CancellationToken cancellationToken)
    {
        try
        {
            // A write cancelled before it starts sends nothing, even with credit and room at hand.
            cancellationToken.ThrowIfCancellationRequested();
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _callToken);
            await _opened.Task.WaitAsync(linked.Token).ConfigureAwait(false);
            // The server grants credit as it reads: what this stream holds must reach it first.
            _frames!.Flush();
            await _gate.TakeAsync(linked.Token).ConfigureAwait(false);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException or OperationCanceledException)
        {
            throw WriteFailed(error, cancellationToken);
        }
        try
        {
            WriteTaken(message, cancellationToken);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException or TimeoutException or OperationCanceledException)
        {
            throw WriteFailed(error, cancellationToken);
        }
    }

    private void WriteTaken(TRequest message, CancellationToken cancellationToken) =>
        _frames!.WriteWithCredit(_gate, _method.RequestMarshaller, message, cancellationToken);

    /// <summary>The exception a write that failed with <paramref name="error"/> ends with.</summary>
    private RpcException WriteFailed(Exception error, CancellationToken cancellationToken)
    {
        if (_result.IsComplete)
        {
            // As grpc-dotnet: a write of a call that is over fails with the call's status, whatever ended its wait (the
            // call's end cancels the call's token, to wake a write waiting for room).
            return new RpcException(_result.GetStatus(), _result.GetTrailers());
        }
        if (error is OperationCanceledException && cancellationToken.IsCancellationRequested)
        {
            // As grpc-dotnet: cancelling a write cancels the call (nothing of the message was sent, but the application
            // gave up on the stream), as cancelling a read does.
            Dispose();
            return new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client.", error));
        }
        return GrpcClientErrors.ToRpc(error);
    }

    /// <inheritdoc/>
    public async Task CompleteAsync()
    {
        if (_halfClosed)
        {
            return;
        }
        _halfClosed = true;
        GrpcClientConnection connection;
        try
        {
            connection = await _opened.Task.WaitAsync(_callToken).ConfigureAwait(false);
            // The half-close must find the stream on the server: it exists once the server granted credits.
            await _gate.WaitGrantedAsync(_callToken).ConfigureAwait(false);
            // It follows every message written.
            _frames!.Flush();
        }
        catch (Exception error) when (error is RpcException or InvalidOperationException or OperationCanceledException or PageRangeException)
        {
            // The call ended already (or its connection did): there is nothing left to close.
            return;
        }
        try
        {
            GrpcFrames.SendEmpty(connection.Connection, GrpcFrameKind.HalfClose, _streamId);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            throw GrpcClientErrors.ToRpc(error);
        }
    }

    /// <summary>Deserializes one message into the inbox; the last one the reply announced ends the reads.</summary>
    /// <returns>False if the stream ended (a message that does not deserialize).</returns>
    /// <exception cref="ProtocolViolationException">Past the window.</exception>
    public bool Deliver(ReadOnlyMemory<byte> body)
    {
        if (!_result.HeadersTask.IsCompleted)
        {
            _result.SetHeaders([]);
        }
        TResponse message;
        try
        {
            message = GrpcDeserializationContext.Deserialize(_method.ResponseMarshaller, body, "response");
        }
        catch (RpcException error)
        {
            _inbox!.End(error);
            Dispose();
            return false;
        }
        if (!_inbox!.TryAdd(message, body.Length))
        {
            throw GrpcReader.Violation($"stream {_streamId} got a message past the window its reader granted.");
        }
        lock (_lock)
        {
            _received++;
            if (_received == _expected)
            {
                EndReads();
                UnregisterUnlocked();
            }
        }
        return true;
    }

    /// <inheritdoc/>
    public void OnFrame(GrpcFrameKind kind, ReadOnlyMemory<byte> body)
    {
        switch (kind)
        {
            case GrpcFrameKind.Message when _method.Type is MethodType.ServerStreaming or MethodType.DuplexStreaming:
                Deliver(body);
                return;
            case GrpcFrameKind.Messages when _method.Type is MethodType.ServerStreaming or MethodType.DuplexStreaming:
                GrpcFrames.DeliverMessages(body, this);
                return;
            case GrpcFrameKind.Headers:
                var reader = new GrpcReader(body.Span);
                Metadata headers = GrpcMetadataCodec.Read(ref reader);
                if (reader.Remaining != 0)
                {
                    throw GrpcReader.Violation($"{reader.Remaining} bytes follow the headers of stream {_streamId}.");
                }
                _result.SetHeaders(headers);
                return;
            case GrpcFrameKind.Credit when _method.Type is MethodType.ClientStreaming or MethodType.DuplexStreaming:
                (int messages, int bytes) = GrpcFrames.ReadCredit(body.Span);
                if (!_gate.TryGrant(messages, bytes))
                {
                    throw GrpcReader.Violation($"stream {_streamId} was granted more credit than it used.");
                }
                return;
            default:
                throw GrpcReader.Violation($"the server sent a {kind} frame on stream {_streamId} of {_method.FullName}.");
        }
    }

    /// <inheritdoc/>
    public void OnConnectionLost(Exception error)
    {
        RpcException rpc = GrpcClientErrors.ToRpc(error);
        _inbox?.End(rpc);
        _gate.Fail(rpc);
    }

    private async Task<TResponse> RunAsync(TRequest request, bool hasRequest)
    {
        try
        {
            GrpcClientConnection connection = await _invoker.GetConnectionAsync(_callToken).ConfigureAwait(false);
            // A token cancelled already opens nothing: the transport would publish the opening call and only then cancel
            // it, and the handler might run.
            _callToken.ThrowIfCancellationRequested();
            _connection = connection;
            _inbox = new GrpcInbox<TResponse>((messages, bytes) => GrpcFrames.SendCredit(connection.Connection, _streamId, messages, bytes));
            _streamId = connection.Register(this);
            PageRangeCallOptions? transport = GrpcClientErrors.TransportOptions(_options);
            // The call's token does not fire at its deadline (the transport bounds the call's waits by it instead): the
            // writer's waits for room are bounded by both.
            _frames = new GrpcFrameWriter(connection.Connection, _streamId, transport?.Deadline, _callToken);
            _opened.TrySetResult(connection);

            var head = new GrpcRequestHead(GrpcCallKind.Stream, _streamId, _method.FullName, _host, hasRequest, _options.Headers ?? []);
            int headLength = head.GetSize();
            uint code = GrpcWire.MethodCode(_method.FullName);
            // As a unary request: straight into the server's region (after a deadline's metadata block) unless someone
            // traces or measures client calls.
            bool zeroCopy = !PageRangeTracing.Source.HasListeners() && !PageRangeMetrics.ClientCallObserved;
            using GrpcSerializationContext serializer = zeroCopy ? GrpcSerializationContext.ForCall(connection.Connection, transport, _callToken) : GrpcSerializationContext.ForArray();
            if (hasRequest)
            {
                serializer.Serialize(_method.RequestMarshaller, request, headLength);
            }
            else
            {
                serializer.SerializeEmpty(headLength);
            }
            head.Write(serializer.IsReserved ? serializer.Reserved.Span.Slice(serializer.HeadOffset, headLength) : serializer.Written.Span[..headLength]);
            using Transaction reply = !serializer.IsReserved
                ? await connection.Connection.CallAsync(code, serializer.Written, default(CallChain), transport, _invoker.Options.CallTimeout, _callToken).ConfigureAwait(false)
                : transport is null
                    ? await serializer.Reserved.CommitCallAsync(code, serializer.TotalLength, _invoker.Options.CallTimeout, _callToken).ConfigureAwait(false)
                    : await connection.Connection.CommitCallAsync(serializer.Reserved, code, serializer.HeadOffset, transport, _invoker.Options.CallTimeout, _callToken).ConfigureAwait(false);
            return OnReply(connection, reply);
        }
        catch (Exception error) when (!ReferenceEquals(error, _failure))
        {
            // (The server's error status is thrown by OnReply once it is recorded: reads end with it after the
            // announced messages, not at once.)
            RpcException rpc = GrpcClientErrors.ToRpc(error);
            _result.Fail(rpc);
            _inbox?.End(rpc);
            _gate.Fail(rpc);
            _opened.TrySetException(rpc);
            _ = _opened.Task.Exception;
            Unregister();
            throw rpc;
        }
        finally
        {
            try
            {
                // The call is over (its status recorded): a write waiting for room in the server's region watches this
                // token under the writer's lock, which Dispose needs too; cancelled, it fails with the call's status. The
                // transport's call let go of the token already, so the server's handler sees no cancel.
                _cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The application disposed the call once its status was out.
            }
            // Its source lets go of the caller's token now, not only when the application disposes the call (Dispose
            // cancels it only while the call runs, and disposing it twice is harmless).
            _cancel.Dispose();
        }
    }

    private TResponse OnReply(GrpcClientConnection connection, Transaction reply)
    {
        GrpcReplyHead head = GrpcClientErrors.ReadReply(connection.Connection, reply.Payload, out int length);
        CheckMessagesSent(connection, head.MessagesSent);
        var status = new Status(head.Code, head.Detail);
        TResponse? response = null;
        if (head.Code == StatusCode.OK && _method.Type == MethodType.ClientStreaming)
        {
            if (!head.HasMessage)
            {
                status = new Status(StatusCode.Internal, "The server's OK reply has no response message.");
            }
            else
            {
                response = GrpcDeserializationContext.Deserialize(_method.ResponseMarshaller, reply.Memory[length..], "response");
            }
        }
        _result.Complete(status, head.Trailers, head.ResponseHeaders);
        RpcException? failure = status.StatusCode == StatusCode.OK ? null : new RpcException(status, head.Trailers);
        // As grpc-dotnet: writes after the end fail with the call's status, OK too.
        _gate.Fail(failure ?? new RpcException(status, head.Trailers));
        lock (_lock)
        {
            _expected = head.MessagesSent;
            _failure = failure;
            // The reply may overtake the last frames: reads end (with the status, if it is an error) only after every
            // message the server announced, so the application reads them all before the status, as over HTTP/2.
            if (_received >= head.MessagesSent)
            {
                EndReads();
            }
        }
        return failure is not null ? throw failure : response!;
    }

    /// <summary>
    /// Refuses a reply that announces more messages than the server could have sent: it writes only under the credits
    /// this side granted, the window and then one per message read, so at most the window past those that arrived (and
    /// the one being delivered right now, which the application may read before it is counted). The reads would wait
    /// for the missing ones until the deadline; a malformed reply ends the connection as a protocol violation instead.
    /// </summary>
    /// <exception cref="RpcException"><see cref="StatusCode.Internal"/>: the server broke the protocol.</exception>
    private void CheckMessagesSent(GrpcClientConnection connection, uint messagesSent)
    {
        uint received;
        lock (_lock)
        {
            received = _received;
        }
        if (messagesSent <= (ulong)received + 1 + GrpcWire.WindowMessages)
        {
            return;
        }
        ProtocolViolationException violation = GrpcReader.Violation(
            $"the reply of stream {_streamId} announces {messagesSent} messages; {received} arrived and the window allows {GrpcWire.WindowMessages} more.");
        connection.Connection.ClosePeerViolation(violation);
        throw new RpcException(new Status(StatusCode.Internal, violation.Message, violation));
    }

    /// <summary>Every announced message arrived: reads end after them, with the error status if there is one.</summary>
    private void EndReads()
    {
        if (_failure is not null)
        {
            _inbox!.EndAfterQueued(_failure);
        }
        else
        {
            _inbox!.End();
        }
        UnregisterUnlocked();
    }

    private void Unregister()
    {
        lock (_lock)
        {
            UnregisterUnlocked();
        }
    }

    private void UnregisterUnlocked()
    {
        if (_connection is { } connection && _streamId != 0)
        {
            connection.Unregister(_streamId);
        }
    }
}
