using PageRange.Server;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The server the <c>pagerange</c> tool's cross-process tests inspect (<c>tests/PageRange.Tests/Tools</c>).
/// <c>tool-serve &lt;name&gt;</c>: a <see cref="PageRangeServer"/> with diagnostics on and an echo on code 1; prints
/// <c>ready: &lt;pid&gt;</c> once it listens, and stops on <c>quit</c> or the end of stdin, printing <c>stopped: ok</c>.
/// </summary>
internal static class ToolScenarios
{
    public static int Serve(string[] args) => ServeAsync(args[1]).GetAwaiter().GetResult();

    private static async Task<int> ServeAsync(string name)
    {
        var options = new PageRangeServerOptions
        {
            MaxThreads = 2,
            StartShrinkerMonitor = false,
            EnableDiagnostics = true,
            ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20 },
        };
        await using PageRangeServer server = PageRangeServer.Start(name, options, builder => builder
            .Map(1, static (Transaction transaction, CallContext _) => transaction.Reply(transaction.Payload)));
        Console.WriteLine($"ready: {Environment.ProcessId}");
        while (Console.ReadLine() is { } line && line != "quit")
        {
        }
        await server.StopAsync();
        Console.WriteLine("stopped: ok");
        return 0;
    }
}
