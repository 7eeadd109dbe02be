using Grpc.Core;
using PageRange.Diagnostics;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Unary calls: one PageRange two-way call. The request (head + message) goes out with the deadline in the transport's
/// own field; the reply holds the status, headers, trailers and, when OK, the response, read in place.
/// </summary>
internal static class GrpcClientUnary
{
    internal static TResponse Blocking<TRequest, TResponse>(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        where TRequest : class
        where TResponse : class
    {
        var result = new GrpcCallResult();
        try
        {
            ValueTask<GrpcClientConnection> connecting = invoker.GetConnectionAsync(options.CancellationToken);
            GrpcClientConnection connection = connecting.IsCompletedSuccessfully ? connecting.Result : connecting.AsTask().GetAwaiter().GetResult();
            // A token cancelled already sends nothing: the transport would publish the request and only then cancel it,
            // and the handler might run.
            options.CancellationToken.ThrowIfCancellationRequested();
            PageRangeCallOptions? transport = GrpcClientErrors.TransportOptions(options);
            uint code = GrpcWire.MethodCode(method.FullName);
            using GrpcSerializationContext serializer = Serialize(connection.Connection, transport, method, host, options, request, options.CancellationToken);
            using Transaction reply = !serializer.IsReserved
                ? connection.Connection.Call(code, serializer.Written.Span, default(CallChain), transport, invoker.Options.CallTimeout, options.CancellationToken)
                : transport is null
                    ? serializer.Reserved.CommitCall(code, serializer.TotalLength, invoker.Options.CallTimeout, options.CancellationToken)
                    : connection.Connection.CommitCall(serializer.Reserved, code, serializer.HeadOffset, transport, invoker.Options.CallTimeout, options.CancellationToken);
            return ReadResponse(connection.Connection, method, reply, result);
        }
        catch (Exception error) when (error is not RpcException)
        {
            throw GrpcClientErrors.ToRpc(error);
        }
    }

    internal static AsyncUnaryCall<TResponse> Start<TRequest, TResponse>(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        where TRequest : class
        where TResponse : class
    {
        var result = new GrpcCallResult();
        CancellationTokenSource cancel = CancellationTokenSource.CreateLinkedTokenSource(options.CancellationToken);
        Task<TResponse> response = RunAsync(invoker, method, host, options, request, result, cancel);
        return new AsyncUnaryCall<TResponse>(response, result.HeadersTask, result.GetStatus, result.GetTrailers, () =>
        {
            if (!result.IsComplete)
            {
                try
                {
                    cancel.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The call ended meanwhile.
                }
            }
        });
    }

    private static async Task<TResponse> RunAsync<TRequest, TResponse>(
        PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request,
        GrpcCallResult result, CancellationTokenSource cancel)
        where TRequest : class
        where TResponse : class
    {
        try
        {
            GrpcClientConnection connection = await invoker.GetConnectionAsync(cancel.Token).ConfigureAwait(false);
            // A token cancelled already sends nothing (see Blocking).
            cancel.Token.ThrowIfCancellationRequested();
            PageRangeCallOptions? transport = GrpcClientErrors.TransportOptions(options);
            uint code = GrpcWire.MethodCode(method.FullName);
            using GrpcSerializationContext serializer = Serialize(connection.Connection, transport, method, host, options, request, cancel.Token);
            using Transaction reply = !serializer.IsReserved
                ? await connection.Connection.CallAsync(code, serializer.Written, default(CallChain), transport, invoker.Options.CallTimeout, cancel.Token).ConfigureAwait(false)
                : transport is null
                    ? await serializer.Reserved.CommitCallAsync(code, serializer.TotalLength, invoker.Options.CallTimeout, cancel.Token).ConfigureAwait(false)
                    : await connection.Connection.CommitCallAsync(serializer.Reserved, code, serializer.HeadOffset, transport, invoker.Options.CallTimeout, cancel.Token).ConfigureAwait(false);
            return ReadResponse(connection.Connection, method, reply, result);
        }
        catch (Exception error)
        {
            RpcException rpc = GrpcClientErrors.ToRpc(error);
            result.Fail(rpc);
            throw rpc;
        }
        finally
        {
            cancel.Dispose();
        }
    }

    /// <summary>
    /// The request, head then message: straight into the server's region (after the transport's metadata block when the
    /// call has a deadline) unless someone traces or measures client calls; then into a pooled buffer the transport
    /// copies (its observed path starts the activity whose context the block carries).
    /// </summary>
    private static GrpcSerializationContext Serialize<TRequest, TResponse>(
        PageRangeConnection connection, PageRangeCallOptions? transport, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request,
        CancellationToken cancellationToken)
    {
        var head = new GrpcRequestHead(GrpcCallKind.Unary, 0, method.FullName, host, HasMessage: true, options.Headers ?? []);
        int headLength = head.GetSize();
        // A deadline's metadata block goes in front of the request in the same reservation; a call someone traces or
        // measures goes through the transport's copying path, which observes it.
        bool zeroCopy = !PageRangeTracing.Source.HasListeners() && !PageRangeMetrics.ClientCallObserved;
        GrpcSerializationContext serializer = zeroCopy ? GrpcSerializationContext.ForCall(connection, transport, cancellationToken) : GrpcSerializationContext.ForArray();
        try
        {
            serializer.Serialize(method.RequestMarshaller, request, headLength);
            head.Write(serializer.IsReserved ? serializer.Reserved.Span.Slice(serializer.HeadOffset, headLength) : serializer.Written.Span[..headLength]);
            return serializer;
        }
        catch
        {
            serializer.Dispose();
            throw;
        }
    }

    private static TResponse ReadResponse<TRequest, TResponse>(PageRangeConnection connection, Method<TRequest, TResponse> method, Transaction reply, GrpcCallResult result)
    {
        GrpcReplyHead head = GrpcClientErrors.ReadReply(connection, reply.Payload, out int length);
        var status = new Status(head.Code, head.Detail);
        if (head.Code != StatusCode.OK)
        {
            var failure = new RpcException(status, head.Trailers);
            result.Complete(status, head.Trailers, head.ResponseHeaders);
            throw failure;
        }
        if (!head.HasMessage)
        {
            var missing = new Status(StatusCode.Internal, "The server's OK reply has no response message.");
            result.Complete(missing, head.Trailers, head.ResponseHeaders);
            throw new RpcException(missing, head.Trailers);
        }
        TResponse response = GrpcDeserializationContext.Deserialize(method.ResponseMarshaller, reply.Memory[length..], "response");
        result.Complete(status, head.Trailers, head.ResponseHeaders);
        return response;
    }
}
