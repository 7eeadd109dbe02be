using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>Unary calls (stub).</summary>
internal static class GrpcClientUnary
{
    internal static TResponse Blocking<TRequest, TResponse>(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        where TRequest : class where TResponse : class =>
        throw new NotImplementedException();

    internal static AsyncUnaryCall<TResponse> Start<TRequest, TResponse>(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        where TRequest : class where TResponse : class =>
        throw new NotImplementedException();
}
