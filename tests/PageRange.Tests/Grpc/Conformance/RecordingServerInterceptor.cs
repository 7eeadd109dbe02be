using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>A server interceptor that records the method of every call it sees, of each of the four kinds.</summary>
public sealed class RecordingServerInterceptor : Interceptor
{
    private readonly ConcurrentQueue<string> _methods = new();

    /// <summary>The methods intercepted so far, in order.</summary>
    public IReadOnlyCollection<string> Methods => _methods;

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        _methods.Enqueue(context.Method);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        _methods.Enqueue(context.Method);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        _methods.Enqueue(context.Method);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        _methods.Enqueue(context.Method);
        return continuation(requestStream, responseStream, context);
    }
}
