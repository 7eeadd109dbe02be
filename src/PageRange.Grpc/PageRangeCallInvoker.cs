using Grpc.Core;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// A gRPC <see cref="CallInvoker"/> over one PageRange connection: what generated clients call. Made by
/// <see cref="PageRangeGrpcChannel"/>. Client interceptors work as on any invoker (<c>invoker.Intercept(...)</c>).
/// </summary>
/// <remarks>
/// Thread-safe: any number of calls at once. Made from a name, it owns its connection: it connects on the first call,
/// connects again on the next call once the connection died, and closes it when disposed. Made over an existing
/// connection, it never closes it. A server that cannot be reached or died fails calls with
/// <see cref="StatusCode.Unavailable"/>.
/// </remarks>
public sealed class PageRangeCallInvoker : CallInvoker, IAsyncDisposable, IDisposable
{
    private readonly string _name;
    private readonly PageRangeGrpcChannelOptions _options;
    private readonly bool _owned;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private volatile GrpcClientConnection? _current;
    private int _disposed;

    internal PageRangeCallInvoker(string name, PageRangeConnection? connection, PageRangeGrpcChannelOptions options)
    {
        _name = name;
        _options = options;
        _owned = connection is null;
        if (connection is not null)
        {
            _current = new GrpcClientConnection(connection, owned: false);
        }
    }

    /// <summary>The server's name.</summary>
    public string Target => _name;

    internal PageRangeGrpcChannelOptions Options => _options;

    /// <inheritdoc/>
    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        ArgumentNullException.ThrowIfNull(method);
        return GrpcClientUnary.Blocking(this, method, host, options, request);
    }

    /// <inheritdoc/>
    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        ArgumentNullException.ThrowIfNull(method);
        return GrpcClientUnary.Start(this, method, host, options, request);
    }

    /// <inheritdoc/>
    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
    {
        ArgumentNullException.ThrowIfNull(method);
        var call = new GrpcClientStreamCall<TRequest, TResponse>(this, method, host, options);
        call.Start(request, hasRequest: true);
        return new AsyncServerStreamingCall<TResponse>(call.ResponseStream, call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    /// <inheritdoc/>
    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options)
    {
        ArgumentNullException.ThrowIfNull(method);
        var call = new GrpcClientStreamCall<TRequest, TResponse>(this, method, host, options);
        call.Start(default!, hasRequest: false);
        return new AsyncClientStreamingCall<TRequest, TResponse>(call.RequestStream, call.SingleResponseAsync, call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    /// <inheritdoc/>
    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(
        Method<TRequest, TResponse> method, string? host, CallOptions options)
    {
        ArgumentNullException.ThrowIfNull(method);
        var call = new GrpcClientStreamCall<TRequest, TResponse>(this, method, host, options);
        call.Start(default!, hasRequest: false);
        return new AsyncDuplexStreamingCall<TRequest, TResponse>(call.RequestStream, call.ResponseStream, call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    /// <summary>Closes the connection if the invoker made it; calls in flight fail with <see cref="StatusCode.Unavailable"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        GrpcClientConnection? current = _current;
        _current = null;
        if (current is not null)
        {
            await current.DisposeAsync().ConfigureAwait(false);
        }
        _connectLock.Dispose();
    }

    /// <inheritdoc cref="DisposeAsync"/>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>The live connection, connecting (again) if needed.</summary>
    /// <exception cref="RpcException"><see cref="StatusCode.Unavailable"/>: the server cannot be reached.</exception>
    internal async ValueTask<GrpcClientConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        GrpcClientConnection? current = _current;
        if (current is not null && (current.IsAlive || !_owned))
        {
            return current;
        }
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            current = _current;
            if (current is not null && current.IsAlive)
            {
                return current;
            }
            if (current is not null)
            {
                _current = null;
                await current.DisposeAsync().ConfigureAwait(false);
            }
            PageRangeConnection connection;
            try
            {
                connection = await PageRangeConnection.ConnectAsync(_name, _options.ConnectionOptions, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception error) when (error is PageRangeException or TimeoutException)
            {
                throw new RpcException(new Status(StatusCode.Unavailable, $"The PageRange server '{_name}' cannot be reached: {error.Message}", error));
            }
            current = new GrpcClientConnection(connection, owned: true);
            _current = current;
            return current;
        }
        finally
        {
            _connectLock.Release();
        }
    }
}
