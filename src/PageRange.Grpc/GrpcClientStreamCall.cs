using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>A streaming call on the client (stub).</summary>
internal sealed class GrpcClientStreamCall<TRequest, TResponse>
    where TRequest : class where TResponse : class
{
    internal GrpcClientStreamCall(PageRangeCallInvoker invoker, Method<TRequest, TResponse> method, string? host, CallOptions options)
    {
        _ = invoker;
        _ = method;
        _ = host;
        _ = options;
    }

    internal IAsyncStreamReader<TResponse> ResponseStream => throw new NotImplementedException();

    internal IClientStreamWriter<TRequest> RequestStream => throw new NotImplementedException();

    internal Task<Metadata> ResponseHeadersAsync => throw new NotImplementedException();

    internal Task<TResponse> SingleResponseAsync => throw new NotImplementedException();

    internal void Start(TRequest request, bool hasRequest) => throw new NotImplementedException();

    internal Status GetStatus() => throw new NotImplementedException();

    internal Metadata GetTrailers() => throw new NotImplementedException();

    internal void Dispose() => _ = this;
}
