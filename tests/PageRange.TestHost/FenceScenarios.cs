using System.Diagnostics;
using System.Globalization;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The doorbell's cross-process scenario (issue 12, the fence moved to the parker): <c>fence-echo &lt;name&gt;</c> connects
/// to the test's listener and answers every call with its payload after a busy delay, so that the caller's wait for
/// the reply outlasts any spin and parks. Flags: <c>--wait Park|SpinThenPark</c>, <c>--delay-us N</c> (default 150),
/// <c>--park-timeout-ms N</c> (default 5000), <c>--membarrier on|off</c> (off: this process announces nothing, as a
/// kernel without the command or an older build would).
/// It prints <c>connected: &lt;inbound uses membarrier&gt; &lt;outbound uses membarrier&gt;</c>, then answers stdin commands:
/// <c>stats</c> (<c>stats: &lt;reader parks&gt; &lt;reader parks that timed out&gt; &lt;calls answered&gt;</c>) and <c>quit</c>.
/// </summary>
internal static class FenceScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(60);

    /// <summary>Two-way: replies with the request's bytes after the delay.</summary>
    public const uint DelayedEcho = 1;

    public static int Echo(string[] args) => RunAsync(args).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(string[] args)
    {
        string name = args[1];
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 2; i + 1 < args.Length; i += 2)
        {
            flags[args[i]] = args[i + 1];
        }
        Doorbell.MembarrierDisabledForTest = flags.TryGetValue("--membarrier", out string? membarrier) && membarrier == "off";
        long delayTicks = (long)(Stopwatch.Frequency / 1e6 * (flags.TryGetValue("--delay-us", out string? delay) ? int.Parse(delay, CultureInfo.InvariantCulture) : 150));
        var options = new PageRangeOptions
        {
            WaitStrategy = flags.TryGetValue("--wait", out string? wait) ? Enum.Parse<WaitStrategy>(wait) : WaitStrategy.Park,
            ParkTimeout = TimeSpan.FromMilliseconds(flags.TryGetValue("--park-timeout-ms", out string? park) ? int.Parse(park, CultureInfo.InvariantCulture) : 5000),
            // As the test's side: spin a microsecond, then park, whatever the machine's load.
            SpinDuration = TimeSpan.FromMicroseconds(1),
        };

        PageRangeConnection connection;
        using (var timeout = new CancellationTokenSource(s_bound))
        {
            connection = await PageRangeConnection.ConnectAsync(name, options, timeout.Token);
        }
        await using (connection)
        {
            Console.WriteLine($"connected: {connection.Inbound.UsesMembarrier} {connection.Outbound.UsesMembarrier}");
            long answered = 0;
            var server = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        using Transaction call = connection.Receive(connection.PeerDied);
                        long start = Stopwatch.GetTimestamp();
                        while (Stopwatch.GetTimestamp() - start < delayTicks)
                        {
                            Thread.SpinWait(20);
                        }
                        // Counted before the reply: once the caller has its last reply, the count is complete.
                        Interlocked.Increment(ref answered);
                        call.Reply(call.Payload);
                    }
                }
                catch (Exception error) when (error is OperationCanceledException or PageRangeException or ObjectDisposedException)
                {
                    // The test closed the connection: the scenario ends with the quit command.
                }
            })
            { IsBackground = true, Name = "fence-echo server" };
            server.Start();

            while (await Console.In.ReadLineAsync() is { } line)
            {
                switch (line)
                {
                    case "stats":
                        Console.WriteLine($"stats: {connection.Inbound.ReaderParks} {connection.Inbound.ReaderParkTimeouts} {Interlocked.Read(ref answered)}");
                        break;
                    case "quit":
                        return 0;
                    default:
                        Console.Error.WriteLine($"unknown command '{line}'");
                        return 2;
                }
            }
            return 0;
        }
    }
}
