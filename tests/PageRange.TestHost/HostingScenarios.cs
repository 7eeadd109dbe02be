using System.Buffers.Binary;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PageRange.Hosting;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Scenarios for the hosting package's cross-process tests: <c>hosting-serve &lt;name&gt;</c> runs a generic host with
/// one server added by <see cref="PageRangeServiceCollectionExtensions.AddPageRangeServer(Microsoft.Extensions.DependencyInjection.IServiceCollection, string, Action{PageRangeHostedServerOptions}, Action{PageRangeServerBuilder})"/>:
/// code 1 replies with this process's id (4 bytes, little-endian) followed by the request; code 2 prints
/// <c>holding: 1</c> and never replies (until the server stops and cancels it). It prints
/// <c>ready: &lt;pid&gt;</c> once the host started, and stops the host gracefully on <c>quit</c> or the end of stdin,
/// then prints <c>stopped: ok</c>.
/// </summary>
internal static class HostingScenarios
{
    public const uint EchoWithPid = 1;
    public const uint Hold = 2;

    public static int Serve(string[] args) => ServeAsync(args[1]).GetAwaiter().GetResult();

    private static async Task<int> ServeAsync(string name)
    {
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        // Stdout carries the lines the test reads: no console logging.
        builder.Logging.ClearProviders();
        builder.Services.AddPageRangeServer(name, options =>
        {
            options.MaxThreads = 4;
            options.StartShrinkerMonitor = false;
            options.ConnectionOptions.RegionSize = 1L << 20;
        }, server => server.Map(EchoWithPid, (Transaction transaction, CallContext _) =>
        {
            byte[] reply = new byte[4 + transaction.Length];
            BinaryPrimitives.WriteInt32LittleEndian(reply, Environment.ProcessId);
            transaction.Payload.CopyTo(reply.AsSpan(4));
            transaction.Reply(reply);
        }).Map(Hold, async (Transaction _, CallContext context) =>
        {
            Console.WriteLine("holding: 1");
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }));
        using IHost host = builder.Build();
        await host.StartAsync();
        Console.WriteLine($"ready: {Environment.ProcessId}");
        while (Console.ReadLine() is { } line && line != "quit")
        {
        }
        await host.StopAsync(TimeSpan.FromSeconds(30));
        Console.WriteLine("stopped: ok");
        return 0;
    }
}
