using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// What most gRPC tests start with: a <see cref="GrpcTestServer"/>, a channel to it and a generated client on that
/// channel, disposed together (the channel first, then the server).
/// </summary>
/// <remarks>Made by <see cref="Start"/>, which disposes the server if the channel cannot be made.</remarks>
internal sealed class GrpcTestClient(GrpcTestServer server, PageRangeCallInvoker channel) : IAsyncDisposable
{
    public GrpcTestServer Server { get; } = server;

    /// <summary>The server's service: what its handlers saw.</summary>
    public CoreTestService Service => Server.Service;

    public PageRangeCallInvoker Channel { get; } = channel;

    public CoreTest.CoreTestClient Client { get; } = new(channel);

    /// <summary>Starts a server as <see cref="GrpcTestServer.Start"/> does and opens a channel to it with the same region size.</summary>
    public static GrpcTestClient Start(Action<PageRangeServerBuilder, CoreTestService>? configure = null, long regionSize = 4L << 20,
        Action<PageRangeServerOptions>? configureOptions = null)
    {
        GrpcTestServer server = GrpcTestServer.Start(configure, regionSize, configureOptions);
        try
        {
            return new GrpcTestClient(server, server.Channel(regionSize));
        }
        catch
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>The channel's connection to the server, opened now if no call has opened it yet.</summary>
    public async Task<GrpcClientConnection> ConnectionAsync() =>
        await Channel.GetConnectionAsync(CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Channel.DisposeAsync();
        }
        finally
        {
            await Server.DisposeAsync();
        }
    }
}
