using Grpc.Core;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// One mapped gRPC method: reads the request head, runs the service's handler (through the interceptors) with a
/// <see cref="PageRangeServerCallContext"/>, and replies with the status, trailers and (unary, client streaming) the
/// response, serialized straight into the caller's region.
/// </summary>
internal sealed class GrpcServerMethod<TRequest, TResponse> : IGrpcServerMethod
    where TRequest : class
    where TResponse : class
{
    private static readonly TimeSpan DeadlineSlack = TimeSpan.FromMilliseconds(50);

    private readonly Method<TRequest, TResponse> _method;
    private readonly UnaryServerMethod<TRequest, TResponse>? _unary;
    private readonly ClientStreamingServerMethod<TRequest, TResponse>? _clientStreaming;
    private readonly ServerStreamingServerMethod<TRequest, TResponse>? _serverStreaming;
    private readonly DuplexStreamingServerMethod<TRequest, TResponse>? _duplex;

    internal GrpcServerMethod(
        Method<TRequest, TResponse> method,
        UnaryServerMethod<TRequest, TResponse>? unary = null,
        ClientStreamingServerMethod<TRequest, TResponse>? clientStreaming = null,
        ServerStreamingServerMethod<TRequest, TResponse>? serverStreaming = null,
        DuplexStreamingServerMethod<TRequest, TResponse>? duplex = null)
    {
        _method = method;
        _unary = unary;
        _clientStreaming = clientStreaming;
        _serverStreaming = serverStreaming;
        _duplex = duplex;
    }

    public string FullName => _method.FullName;

    public async ValueTask HandleAsync(Transaction transaction, CallContext call, GrpcServerState state)
    {
        if (!transaction.IsTwoWay)
        {
            // A oneway with a method's code: there is nobody to answer.
            return;
        }
        GrpcRequestHead head;
        int headLength;
        try
        {
            head = GrpcRequestHead.Read(transaction.Payload, out headLength);
            bool unary = _method.Type == MethodType.Unary;
            bool hasRequest = _method.Type is MethodType.Unary or MethodType.ServerStreaming;
            if (head.Method == _method.FullName && (head.Kind == GrpcCallKind.Unary) != unary)
            {
                throw GrpcReader.Violation($"a {head.Kind} call of the {_method.Type} method {_method.FullName}.");
            }
            if (head.Method == _method.FullName && head.HasMessage != hasRequest)
            {
                throw GrpcReader.Violation($"a call of the {_method.Type} method {_method.FullName} {(head.HasMessage ? "with" : "without")} a request message.");
            }
        }
        catch (ProtocolViolationException violation)
        {
            call.Connection.ClosePeerViolation(violation);
            return;
        }
        if (head.Method != _method.FullName)
        {
            // Only the code matched: a method this server does not map, whose code collides with one it does.
            Reply(transaction, new Status(StatusCode.Unimplemented, $"Method {head.Method} is unimplemented."), [], null, null, 0);
            return;
        }

        if (call.Deadline is { } deadline && deadline <= DateTimeOffset.UtcNow)
        {
            Reply(transaction, new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded"), [], null, null, 0);
            return;
        }
        // The transport's token fires at the deadline too. A timer of our own here capped it at 20 days: a deadline
        // further off ended the call then, early; the transport's treats a deadline beyond what a timer holds as none.
        CancellationToken token = call.CancellationToken;

        if (_method.Type == MethodType.Unary)
        {
            await RunUnaryAsync(transaction, call, head, headLength, token).ConfigureAwait(false);
        }
        else
        {
            await RunStreamAsync(transaction, call, state, head, headLength, token).ConfigureAwait(false);
        }
    }

    private async ValueTask RunUnaryAsync(Transaction transaction, CallContext call, GrpcRequestHead head, int headLength, CancellationToken cancellationToken)
    {
        var context = new PageRangeServerCallContext(_method.FullName, head.Host, call, head.Headers, null, cancellationToken);
        TResponse? response = null;
        Status status;
        try
        {
            TRequest request = GrpcDeserializationContext.Deserialize(_method.RequestMarshaller, transaction.Memory[headLength..], "request");
            response = await _unary!(request, context).ConfigureAwait(false);
            status = context.Status;
        }
        catch (Exception error)
        {
            status = StatusOf(error, context, call);
        }
        Reply(transaction, status, context.ResponseTrailers, context.SentHeaders, status.StatusCode == StatusCode.OK ? response : null, 0);
    }

    private async ValueTask RunStreamAsync(
        Transaction transaction, CallContext call, GrpcServerState state, GrpcRequestHead head, int headLength, CancellationToken cancellationToken)
    {
        bool readsRequests = _method.Type is MethodType.ClientStreaming or MethodType.DuplexStreaming;
        var stream = new GrpcServerStream<TRequest, TResponse>(call.Connection, head.StreamId, _method, readsRequests, cancellationToken);
        var context = new PageRangeServerCallContext(_method.FullName, head.Host, call, head.Headers, stream.SendHeadersAsync, cancellationToken);
        stream.Context = context;
        if (!state.TryRegister(call.Connection, head.StreamId, stream))
        {
            call.Connection.ClosePeerViolation(GrpcReader.Violation($"stream id {head.StreamId} is in use."));
            return;
        }
        TResponse? response = null;
        Status status;
        try
        {
            if (readsRequests)
            {
                stream.GrantInitialCredit();
            }
            switch (_method.Type)
            {
                case MethodType.ServerStreaming:
                    TRequest request = GrpcDeserializationContext.Deserialize(_method.RequestMarshaller, transaction.Memory[headLength..], "request");
                    await _serverStreaming!(request, stream, context).ConfigureAwait(false);
                    break;
                case MethodType.ClientStreaming:
                    response = await _clientStreaming!(stream, context).ConfigureAwait(false);
                    break;
                default:
                    await _duplex!(stream, stream, context).ConfigureAwait(false);
                    break;
            }
            status = context.Status;
        }
        catch (Exception error)
        {
            status = StatusOf(error, context, call);
        }
        finally
        {
            state.Unregister(call.Connection, head.StreamId);
            stream.End();
        }
        Reply(transaction, status, context.ResponseTrailers, context.SentHeaders, status.StatusCode == StatusCode.OK ? response : null, stream.MessagesSent);
    }

    /// <summary>The status a handler's exception ends the call with (as grpc-dotnet maps them).</summary>
    private static Status StatusOf(Exception error, PageRangeServerCallContext context, CallContext call)
    {
        switch (error)
        {
            case RpcException rpc:
                foreach (Metadata.Entry entry in rpc.Trailers)
                {
                    context.ResponseTrailers.Add(entry);
                }
                return rpc.Status;
            // The client gives up at the deadline too: its cancel may arrive a hair before the server's own timer.
            case OperationCanceledException when context.Deadline != DateTime.MaxValue && DateTime.UtcNow >= context.Deadline - DeadlineSlack:
                return new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded");
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new Status(StatusCode.Cancelled, call.CancellationToken.IsCancellationRequested ? "The call was cancelled." : "The call was cancelled by the handler.");
            default:
                return new Status(StatusCode.Unknown, "Exception was thrown by handler.", error);
        }
    }

    /// <summary>Replies with the status and, when OK, the response; a caller gone meanwhile is not an error.</summary>
    private void Reply(Transaction transaction, Status status, Metadata trailers, Metadata? headers, TResponse? response, uint messagesSent)
    {
        try
        {
            ReplyCore(transaction, status, trailers, headers, response, messagesSent);
        }
        catch (RpcException failure) when (transaction.IsLive)
        {
            // The response or the trailers could not be written (too large, a failing marshaller): the status says so.
            ReplyCore(transaction, failure.Status, [], null, null, messagesSent);
        }
    }

    private void ReplyCore(Transaction transaction, Status status, Metadata trailers, Metadata? headers, TResponse? response, uint messagesSent)
    {
        var head = new GrpcReplyHead(status.StatusCode, GrpcReplyHead.BoundDetail(status.Detail), messagesSent, response is not null, headers ?? [], trailers);
        int headLength = head.GetSize();
        using GrpcSerializationContext serializer = GrpcSerializationContext.ForReply(transaction);
        try
        {
            if (response is not null)
            {
                serializer.Serialize(_method.ResponseMarshaller, response, headLength);
            }
            else
            {
                serializer.SerializeEmpty(headLength);
            }
            ReservedBuffer reserved = serializer.Reserved;
            head.Write(reserved.Span[..headLength]);
            reserved.CommitReply(serializer.TotalLength);
        }
        catch (Exception error) when (error is PageRangeException or ObjectDisposedException)
        {
            // The caller is gone, or gave up: nobody reads the reply.
        }
    }
}
