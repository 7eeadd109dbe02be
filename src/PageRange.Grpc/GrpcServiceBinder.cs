using Grpc.Core;
using Grpc.Core.Interceptors;

namespace PageRange.Grpc;

/// <summary>
/// What the generated <c>BindService(ServiceBinderBase, TService)</c> calls: collects the service's methods with their
/// handlers, each wrapped in the interceptors, and for a per-call service an instance made for each call.
/// </summary>
/// <typeparam name="TService">The service class.</typeparam>
internal sealed class GrpcServiceBinder<TService> : ServiceBinderBase
    where TService : class
{
    private readonly Func<TService>? _perCall;
    private readonly Interceptor[] _interceptors;

    /// <param name="perCall">Makes each call's instance; null: the handlers' own instance serves every call.</param>
    /// <param name="interceptors">Outermost first.</param>
    internal GrpcServiceBinder(Func<TService>? perCall, Interceptor[] interceptors)
    {
        _perCall = perCall;
        _interceptors = interceptors;
    }

    internal List<IGrpcServerMethod> Methods { get; } = [];

    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
    {
        ArgumentNullException.ThrowIfNull(method);
        UnaryServerMethod<TRequest, TResponse> run = PerCall(Required(handler, method));
        for (int i = _interceptors.Length - 1; i >= 0; i--)
        {
            (Interceptor interceptor, UnaryServerMethod<TRequest, TResponse> inner) = (_interceptors[i], run);
            run = (request, context) => interceptor.UnaryServerHandler(request, context, inner);
        }
        Methods.Add(new GrpcServerMethod<TRequest, TResponse>(method, unary: run));
    }

    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler)
    {
        ArgumentNullException.ThrowIfNull(method);
        ClientStreamingServerMethod<TRequest, TResponse> run = PerCall(Required(handler, method));
        for (int i = _interceptors.Length - 1; i >= 0; i--)
        {
            (Interceptor interceptor, ClientStreamingServerMethod<TRequest, TResponse> inner) = (_interceptors[i], run);
            run = (requests, context) => interceptor.ClientStreamingServerHandler(requests, context, inner);
        }
        Methods.Add(new GrpcServerMethod<TRequest, TResponse>(method, clientStreaming: run));
    }

    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
    {
        ArgumentNullException.ThrowIfNull(method);
        ServerStreamingServerMethod<TRequest, TResponse> run = PerCall(Required(handler, method));
        for (int i = _interceptors.Length - 1; i >= 0; i--)
        {
            (Interceptor interceptor, ServerStreamingServerMethod<TRequest, TResponse> inner) = (_interceptors[i], run);
            run = (request, responses, context) => interceptor.ServerStreamingServerHandler(request, responses, context, inner);
        }
        Methods.Add(new GrpcServerMethod<TRequest, TResponse>(method, serverStreaming: run));
    }

    /// <inheritdoc/>
    public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
    {
        ArgumentNullException.ThrowIfNull(method);
        DuplexStreamingServerMethod<TRequest, TResponse> run = PerCall(Required(handler, method));
        for (int i = _interceptors.Length - 1; i >= 0; i--)
        {
            (Interceptor interceptor, DuplexStreamingServerMethod<TRequest, TResponse> inner) = (_interceptors[i], run);
            run = (requests, responses, context) => interceptor.DuplexStreamingServerHandler(requests, responses, context, inner);
        }
        Methods.Add(new GrpcServerMethod<TRequest, TResponse>(method, duplex: run));
    }

    private static T Required<T>(T? handler, IMethod method)
        where T : Delegate =>
        handler ?? throw new ArgumentException($"The generated BindService gave no handler for {method.FullName}.", nameof(handler));

    /// <summary>
    /// For a per-call service, the bound handler's method called on a new instance each call: an open-instance delegate
    /// (virtual dispatch still picks the override), made once here.
    /// </summary>
    private static TOpen Open<TOpen>(Delegate bound)
        where TOpen : Delegate =>
        (TOpen)Delegate.CreateDelegate(typeof(TOpen), null, bound.Method);

    private UnaryServerMethod<TRequest, TResponse> PerCall<TRequest, TResponse>(UnaryServerMethod<TRequest, TResponse> bound)
        where TRequest : class
        where TResponse : class
    {
        if (_perCall is not { } factory)
        {
            return bound;
        }
        var open = Open<Func<TService, TRequest, ServerCallContext, Task<TResponse>>>(bound);
        return (request, context) => open(factory(), request, context);
    }

    private ClientStreamingServerMethod<TRequest, TResponse> PerCall<TRequest, TResponse>(ClientStreamingServerMethod<TRequest, TResponse> bound)
        where TRequest : class
        where TResponse : class
    {
        if (_perCall is not { } factory)
        {
            return bound;
        }
        var open = Open<Func<TService, IAsyncStreamReader<TRequest>, ServerCallContext, Task<TResponse>>>(bound);
        return (requests, context) => open(factory(), requests, context);
    }

    private ServerStreamingServerMethod<TRequest, TResponse> PerCall<TRequest, TResponse>(ServerStreamingServerMethod<TRequest, TResponse> bound)
        where TRequest : class
        where TResponse : class
    {
        if (_perCall is not { } factory)
        {
            return bound;
        }
        var open = Open<Func<TService, TRequest, IServerStreamWriter<TResponse>, ServerCallContext, Task>>(bound);
        return (request, responses, context) => open(factory(), request, responses, context);
    }

    private DuplexStreamingServerMethod<TRequest, TResponse> PerCall<TRequest, TResponse>(DuplexStreamingServerMethod<TRequest, TResponse> bound)
        where TRequest : class
        where TResponse : class
    {
        if (_perCall is not { } factory)
        {
            return bound;
        }
        var open = Open<Func<TService, IAsyncStreamReader<TRequest>, IServerStreamWriter<TResponse>, ServerCallContext, Task>>(bound);
        return (requests, responses, context) => open(factory(), requests, responses, context);
    }
}
