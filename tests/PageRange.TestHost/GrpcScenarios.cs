using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Grpc.Conformance;

namespace PageRange.TestHost;

/// <summary>
/// gRPC over PageRange across processes: <c>grpc-serve &lt;name&gt;</c> serves the conformance service
/// (<c>tests/Protos/conformance.proto</c>) on a <see cref="PageRangeServer"/> named <c>name</c>, prints
/// <c>ready: &lt;pid&gt;</c>, and stops on <c>quit</c> or the end of stdin, then prints <c>stopped: ok</c>.
/// </summary>
internal static class GrpcScenarios
{
    public static int Serve(string[] args) => ServeAsync(args[1]).GetAwaiter().GetResult();

    private static async Task<int> ServeAsync(string name)
    {
        var options = new PageRangeServerOptions
        {
            MaxThreads = 4,
            StartShrinkerMonitor = false,
            ConnectionOptions = new PageRangeOptions { RegionSize = 8L << 20, WaitStrategy = WaitStrategy.SpinThenPark },
        };
        await using (PageRangeServer server = PageRangeServer.Start(name, options, builder => builder.MapGrpcService(new ConformanceService())))
        {
            Console.WriteLine($"ready: {Environment.ProcessId}");
            while (Console.ReadLine() is { } line && line != "quit")
            {
            }
            await server.StopAsync();
        }
        Console.WriteLine("stopped: ok");
        return 0;
    }
}
