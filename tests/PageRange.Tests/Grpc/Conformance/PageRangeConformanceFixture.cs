using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The subject: the conformance service mapped on a <see cref="PageRangeServer"/> with
/// <see cref="PageRangeGrpcServerBuilderExtensions"/>, and a channel from <see cref="PageRangeGrpcChannel.Create(string, PageRangeGrpcChannelOptions?)"/>.
/// </summary>
public sealed class PageRangeConformanceFixture : ConformanceFixture
{
    // The 1 MiB echo travels in one reservation with its header block: the region holds several.
    private const long RegionSize = 8L << 20;

    private PageRangeServer? _server;
    private PageRangeCallInvoker? _invoker;

    /// <summary>The server's name.</summary>
    public string Name { get; } = ControlHandshakeTests.UniqueName();

    public override Task InitializeAsync()
    {
        var options = new PageRangeServerOptions
        {
            MaxThreads = 4,
            StartShrinkerMonitor = false,
            ConnectionOptions = new PageRangeOptions { RegionSize = RegionSize, WaitStrategy = WaitStrategy.SpinThenPark },
        };
        var serviceOptions = new PageRangeGrpcServiceOptions();
        serviceOptions.Interceptors.Add(ServerInterceptor);
        _server = PageRangeServer.Start(Name, options, builder => builder.MapGrpcService(Service, serviceOptions));
        _invoker = PageRangeGrpcChannel.Create(Name, new PageRangeGrpcChannelOptions
        {
            ConnectionOptions = new PageRangeOptions { RegionSize = RegionSize, WaitStrategy = WaitStrategy.SpinThenPark },
        });
        Invoker = _invoker;
        return Task.CompletedTask;
    }

    public override async Task DisposeAsync()
    {
        if (_invoker is not null)
        {
            await _invoker.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        }
        if (_server is not null)
        {
            await _server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        }
    }
}
