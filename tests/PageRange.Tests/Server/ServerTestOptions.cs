using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// The options the server tests share: a small worker pool, no memory-pressure monitor (the tests call the shrinker
/// themselves when they need it), 1 MiB regions, and a wait strategy that parks, so the two cores stay with the test.
/// </summary>
internal static class ServerTestOptions
{
    private const long RegionSize = 1L << 20;

    /// <summary>A server whose clients run in this process.</summary>
    internal static PageRangeServerOptions InProcess(int maxThreads) => new()
    {
        MaxThreads = maxThreads,
        StartShrinkerMonitor = false,
        ConnectionOptions = new PageRangeOptions { RegionSize = RegionSize, WaitStrategy = WaitStrategy.SpinThenPark },
    };

    /// <summary>A server whose clients are TestHost processes, started many at once on a busy machine.</summary>
    /// <param name="helloTimeout">How long a connected client may stay silent before its handshake fails.</param>
    internal static PageRangeServerOptions ForClientProcesses(int maxThreads, TimeSpan helloTimeout, WaitStrategy waitStrategy) => new()
    {
        MaxThreads = maxThreads,
        StartShrinkerMonitor = false,
        ConnectionOptions = new PageRangeOptions
        {
            RegionSize = RegionSize,
            WaitStrategy = waitStrategy,
            // Generous: each client JITs its handshake between its connect and its hello, and many start at once (at a
            // load average of 64 a hello took more than 20 seconds once).
            HelloTimeout = helloTimeout,
            ConnectTimeout = TimeSpan.FromSeconds(60),
        },
    };

    /// <summary>Connects an in-process client with 1 MiB regions, bounded by <see cref="TestTimeouts.Long"/>.</summary>
    internal static Task<PageRangeConnection> ConnectAsync(string name) =>
        PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionSize = RegionSize }).AsTask().WaitAsync(TestTimeouts.Long);
}
