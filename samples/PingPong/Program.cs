using Spectre.Console;

namespace PingPong;

/// <summary>
/// Ping-pong between two real processes over PageRange: this program starts itself again as the peer, then measures
/// synchronous and async round trips of small MessagePack messages and a oneway stream, and the same synchronous round
/// trip over a Unix domain socket for comparison.
/// </summary>
internal static class Program
{
    private static Task<int> Main(string[] args) => SampleCommand.InvokeAsync(args, RunAsync);

    private static async Task<int> RunAsync(SampleOptions options)
    {
        if (Console.IsOutputRedirected)
        {
            // Redirected output has no terminal width; Spectre would assume 80 columns and wrap every cell.
            AnsiConsole.Console.Profile.Width = 120;
        }
        try
        {
            return options.PeerName is { } name ? Peer.Run(name, options) : await Host.RunAsync(options);
        }
        catch (PlatformNotSupportedException error)
        {
            Console.Error.WriteLine($"error: {error.Message}");
            return 1;
        }
    }
}
