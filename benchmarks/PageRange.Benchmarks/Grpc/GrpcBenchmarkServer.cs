using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Benchmarks.Grpc;

/// <summary>
/// The second process of the <c>grpc</c> command (<c>--grpc-server NAME SOCKET PIPE WAIT</c>): one
/// <see cref="BenchService"/> served at once over PageRange (<c>NAME</c>) and by Kestrel over HTTP/2 on the Unix socket
/// <c>SOCKET</c>; it also tries Kestrel's named-pipe transport on <c>PIPE</c>, as .NET's IPC guidance configures it, and
/// says whether that works here. Prints <c>pipe: ok</c> or <c>pipe: unsupported &lt;reason&gt;</c>, then <c>ready</c>;
/// stops when stdin closes.
/// </summary>
internal static class GrpcBenchmarkServer
{
    /// <summary>A plain PageRange handler (it replies with the request) beside the gRPC methods: the clients' reference rows.</summary>
    internal const uint RawCode = 7;

    public static int Run(string[] args) => RunAsync(args[0], args[1], args[2], Enum.Parse<WaitStrategy>(args[3])).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(string name, string socketPath, string pipeName, WaitStrategy wait)
    {
        var service = new BenchService();
        var options = new PageRangeServerOptions
        {
            MaxThreads = 4,
            StartShrinkerMonitor = false,
            ConnectionOptions = new PageRangeOptions { WaitStrategy = wait, RegionSize = 8L << 20 },
        };
        await using PageRangeServer server = PageRangeServer.Start(name, options, builder => builder
            .MapGrpcService(service)
            .Map(RawCode, static (transaction, _) => transaction.Reply(transaction.Payload)));
        await using WebApplication kestrel = Build(service, kestrel => kestrel.ListenUnixSocket(socketPath, l => l.Protocols = HttpProtocols.Http2));
        await kestrel.StartAsync();
        WebApplication? pipe = null;
        try
        {
            pipe = Build(service, kestrel => kestrel.ListenNamedPipe(pipeName, l => l.Protocols = HttpProtocols.Http2));
            await pipe.StartAsync();
            Console.WriteLine("pipe: ok");
        }
        catch (Exception error) when (error is PlatformNotSupportedException or InvalidOperationException or NotSupportedException or IOException)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pipe: unsupported {error.GetType().Name}: {error.Message.ReplaceLineEndings(" ")}"));
            if (pipe is not null)
            {
                await pipe.DisposeAsync();
                pipe = null;
            }
        }
        Console.WriteLine("ready");
        while (Console.ReadLine() is not null)
        {
        }
        if (pipe is not null)
        {
            await pipe.StopAsync();
            await pipe.DisposeAsync();
        }
        await kestrel.StopAsync();
        return 0;
    }

    private static WebApplication Build(BenchService service, Action<KestrelServerOptions> listen)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(listen);
        builder.Services.AddSingleton(service);
        builder.Services.AddGrpc();
        WebApplication app = builder.Build();
        app.MapGrpcService<BenchService>();
        return app;
    }
}
