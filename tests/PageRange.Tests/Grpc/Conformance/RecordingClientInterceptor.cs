using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// A client interceptor that records the method of every call of each kind and adds the request header
/// <c>x-intercepted: client</c>, so the server's echo shows the interceptor ran before the transport.
/// </summary>
internal sealed class RecordingClientInterceptor : Interceptor
{
    private readonly ConcurrentQueue<string> _calls = new();

    /// <summary>"kind method" of every call intercepted so far, in order.</summary>
    public IReadOnlyCollection<string> Calls => _calls;

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        _calls.Enqueue("blocking " + context.Method.FullName);
        return continuation(request, Marked(context));
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        _calls.Enqueue("unary " + context.Method.FullName);
        return continuation(request, Marked(context));
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        _calls.Enqueue("server-streaming " + context.Method.FullName);
        return continuation(request, Marked(context));
    }

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        _calls.Enqueue("client-streaming " + context.Method.FullName);
        return continuation(Marked(context));
    }

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        _calls.Enqueue("duplex " + context.Method.FullName);
        return continuation(Marked(context));
    }

    private static ClientInterceptorContext<TRequest, TResponse> Marked<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class
        where TResponse : class
    {
        Metadata headers = context.Options.Headers ?? new Metadata();
        headers.Add("x-intercepted", "client");
        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithHeaders(headers));
    }
}
