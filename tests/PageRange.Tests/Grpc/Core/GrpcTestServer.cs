using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>A PageRange server mapping <see cref="CoreTestService"/>, and channels to it.</summary>
internal sealed class GrpcTestServer : IAsyncDisposable
{
    private GrpcTestServer(PageRangeServer server, CoreTestService service)
    {
        Server = server;
        Service = service;
    }

    public PageRangeServer Server { get; }

    public CoreTestService Service { get; }

    public string Name => Server.Name;

    public static PageRangeOptions ConnectionOptions(long regionSize = 4L << 20) => new()
    {
        RegionSize = regionSize,
        WaitStrategy = WaitStrategy.SpinThenPark,
        RegionFullTimeout = TimeSpan.FromSeconds(30),
    };

    public static GrpcTestServer Start(Action<PageRangeServerBuilder, CoreTestService>? configure = null, long regionSize = 4L << 20,
        Action<PageRangeServerOptions>? configureOptions = null)
    {
        var service = new CoreTestService();
        var options = new PageRangeServerOptions
        {
            MaxThreads = 8,
            StartShrinkerMonitor = false,
            ConnectionOptions = ConnectionOptions(regionSize),
        };
        configureOptions?.Invoke(options);
        PageRangeServer server = PageRangeServer.Start(ControlHandshakeTests.UniqueName(), options, builder =>
        {
            if (configure is null)
            {
                builder.MapGrpcService(service);
            }
            else
            {
                configure(builder, service);
            }
        });
        return new GrpcTestServer(server, service);
    }

    public PageRangeCallInvoker Channel(long regionSize = 4L << 20) =>
        PageRangeGrpcChannel.Create(Name, new PageRangeGrpcChannelOptions { ConnectionOptions = ConnectionOptions(regionSize) });

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
