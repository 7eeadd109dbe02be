using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Makes gRPC channels over PageRange: a <see cref="global::Grpc.Core.CallInvoker"/> for any generated client, e.g.
/// <c>new Greeter.GreeterClient(PageRangeGrpcChannel.Create("greeter"))</c>, talking to a <see cref="Server.PageRangeServer"/>
/// that maps the service with <see cref="PageRangeGrpcServerBuilderExtensions.MapGrpcService{TService}(Server.PageRangeServerBuilder, TService)"/>.
/// </summary>
public static class PageRangeGrpcChannel
{
    /// <summary>A channel to the PageRange server <paramref name="name"/>; it connects on its first call and reconnects
    /// on the next call after the connection died.</summary>
    /// <param name="name">The server's name (<see cref="Server.PageRangeServer.Name"/>).</param>
    /// <param name="options">The channel's options; <c>null</c> for the defaults. Copied.</param>
    /// <returns>The invoker; it owns its connection: dispose it.</returns>
    /// <exception cref="ArgumentException">The name is empty.</exception>
    public static PageRangeCallInvoker Create(string name, PageRangeGrpcChannelOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return new PageRangeCallInvoker(name, null, (options ?? new PageRangeGrpcChannelOptions()).Clone());
    }

    /// <summary>A channel over an existing connection, which the caller owns (disposing the invoker leaves it open).</summary>
    /// <param name="connection">A connection to a PageRange server that maps gRPC services.</param>
    /// <param name="options">The channel's options; <c>null</c> for the defaults. Copied.</param>
    /// <returns>The invoker.</returns>
    public static PageRangeCallInvoker Create(PageRangeConnection connection, PageRangeGrpcChannelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return new PageRangeCallInvoker(connection.Name, connection, (options ?? new PageRangeGrpcChannelOptions()).Clone());
    }
}
