using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using HdrHistogram;
using PageRange.Server;

namespace PageRange.Benchmarks.Server;

/// <summary>
/// <c>server</c>: 1, 2, 4 and 8 client processes calling one server, PageRangeServer beside a Unix-socket server with
/// the same thread model (a reader per client, 4 worker threads), interleaved in one run. Prints calls/s and p50/p99 of
/// the merged client latencies, and writes <c>server-results.md</c> with <c>--out</c>. Not a timed test.
/// </summary>
internal static class ServerBenchmark
{
    /// <summary>The command's name, the first argument.</summary>
    public const string CommandName = "server";

    private static readonly Option<int[]> s_clients = OptionRules.Counts(new Option<int[]>("--clients")
    {
        Description = "Comma list of client process counts, one row pair (pagerange, socket) each.",
        DefaultValueFactory = _ => [1, 2, 4, 8],
        HelpName = "1,2,4,8",
    });

    private static readonly Option<int> s_size = OptionRules.Positive(new Option<int>("--size")
    {
        Description = "Bytes of each call's payload (and reply).",
        DefaultValueFactory = _ => 64,
        HelpName = "bytes",
    });

    private static readonly Option<int> s_warmup = OptionRules.NotNegative(new Option<int>("--warmup")
    {
        Description = "Milliseconds of warm-up per row, not measured.",
        DefaultValueFactory = _ => 1000,
        HelpName = "ms",
    });

    private static readonly Option<int> s_measure = OptionRules.Positive(new Option<int>("--measure")
    {
        Description = "Milliseconds measured per row.",
        DefaultValueFactory = _ => 3000,
        HelpName = "ms",
    });

    private static readonly Option<int> s_threads = OptionRules.Positive(new Option<int>("--threads")
    {
        Description = "Worker threads of each server.",
        DefaultValueFactory = _ => 4,
        HelpName = "n",
    });

    private static readonly Option<string> s_out = new("--out")
    {
        Description = "Where server-results.md goes (default: not written).",
        HelpName = "dir",
    };

    private static readonly Option<string> s_wait = new Option<string>("--wait")
    {
        Description = "How PageRange's processes wait: park or spin-then-park.",
        DefaultValueFactory = _ => "spin-then-park",
        HelpName = "park|spin-then-park",
    }.AcceptOnlyFromAmong("park", "spin-then-park");

    private static readonly Option<bool> s_quick = new("--quick")
    {
        Description = "1 and 2 clients, 200 ms warm-up, 500 ms measured (the smoke test's mode); overrides those three options.",
    };

    /// <summary>The <c>server</c> command; <paramref name="args"/> (after <c>server</c>) go into the results' command line.</summary>
    public static Command CreateCommand(string[] args)
    {
        var command = new Command(CommandName,
            "Client processes calling one server: PageRangeServer beside a Unix-socket server with the same thread model, " +
            "interleaved; calls/s and p50/p99 of the merged client latencies. Not a timed test.")
        {
            s_clients, s_size, s_warmup, s_measure, s_threads, s_wait, s_out, s_quick,
        };
        command.SetAction((parse, _) =>
        {
            bool quick = parse.GetValue(s_quick);
            return RunAsync(
                quick ? [1, 2] : parse.GetValue(s_clients)!,
                parse.GetValue(s_size),
                quick ? 200 : parse.GetValue(s_warmup),
                quick ? 500 : parse.GetValue(s_measure),
                parse.GetValue(s_threads),
                parse.GetValue(s_wait) == "park" ? WaitStrategy.Park : WaitStrategy.SpinThenPark,
                parse.GetValue(s_out),
                args);
        });
        return command;
    }

    private static async Task<int> RunAsync(int[] clientCounts, int size, int warmupMs, int measureMs, int threads, WaitStrategy wait, string? outDirectory, string[] args)
    {
        string load = File.ReadLines("/proc/loadavg").FirstOrDefault() ?? "n/a";
        var rows = new List<string>();
        foreach (int clients in clientCounts)
        {
            // Interleaved: both transports at each client count, so a change in the machine's load hits both.
            foreach (string transport in new[] { "pagerange", "socket" })
            {
                Row row = await MeasureAsync(transport, clients, size, threads, wait, warmupMs, measureMs);
                string line = string.Create(CultureInfo.InvariantCulture,
                    $"| {transport} | {clients} | {row.CallsPerSecond:N0} | {row.P50Micros:F1} | {row.P99Micros:F1} |");
                Console.WriteLine(line);
                rows.Add(line);
            }
        }
        var markdown = new StringBuilder();
        markdown.AppendLine(CultureInfo.InvariantCulture, $"Server workload: {size} B calls, {threads} worker threads, PageRange wait {wait}, {warmupMs} ms warm-up, {measureMs} ms measured per row; {Environment.ProcessorCount} cores; load average before: {load}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        markdown.AppendLine();
        markdown.AppendLine("| server | clients | calls/s (all clients) | p50 µs | p99 µs |");
        markdown.AppendLine("|---|--:|--:|--:|--:|");
        foreach (string row in rows)
        {
            markdown.AppendLine(row);
        }
        markdown.AppendLine();
        markdown.AppendLine("command: dotnet run -c Release --project benchmarks/PageRange.Benchmarks -- server " + string.Join(' ', args));
        Console.WriteLine();
        Console.WriteLine(markdown.ToString());
        if (outDirectory is not null)
        {
            Directory.CreateDirectory(outDirectory);
            await File.WriteAllTextAsync(Path.Combine(outDirectory, "server-results.md"), markdown.ToString());
        }
        return 0;
    }

    private readonly record struct Row(double CallsPerSecond, double P50Micros, double P99Micros);

    private static async Task<Row> MeasureAsync(string transport, int clients, int size, int threads, WaitStrategy wait, int warmupMs, int measureMs)
    {
        string name = $"bench-server-{Environment.ProcessId}-{transport}-{clients}";
        PageRangeServer? server = null;
        SocketServer? socketServer = null;
        string target;
        if (transport == "pagerange")
        {
            server = PageRangeServer.Start(name, new PageRangeServerOptions
                {
                    MinThreads = threads,
                    MaxThreads = threads,
                    StartShrinkerMonitor = false,
                    ConnectionOptions = new PageRangeOptions { WaitStrategy = wait },
                },
                builder => builder.Map(1, static (tx, _) => tx.Reply(tx.Payload)));
            target = name;
        }
        else
        {
            target = Path.Combine(Path.GetTempPath(), name + ".sock");
            File.Delete(target);
            socketServer = new SocketServer(target, threads);
        }
        var processes = new List<Process>();
        try
        {
            for (int i = 0; i < clients; i++)
            {
                processes.Add(StartClient(transport, target, size, wait, warmupMs, measureMs));
            }
            foreach (Process process in processes)
            {
                Expect(process, "ready");
            }
            foreach (Process process in processes)
            {
                process.StandardInput.WriteLine("go");
                process.StandardInput.Flush();
            }
            var merged = new LongHistogram(TimeStamp.Seconds(10), 3);
            double callsPerSecond = 0;
            foreach (Process process in processes)
            {
                string[] result = Expect(process, "result").Split(' ');
                callsPerSecond += long.Parse(result[1], CultureInfo.InvariantCulture) / double.Parse(result[2], CultureInfo.InvariantCulture);
                foreach (string pair in Expect(process, "hist").Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
                {
                    string[] parts = pair.Split(':');
                    merged.RecordValueWithCount(long.Parse(parts[0], CultureInfo.InvariantCulture), long.Parse(parts[1], CultureInfo.InvariantCulture));
                }
                if (!process.WaitForExit(TimeSpan.FromSeconds(30)) || process.ExitCode != 0)
                {
                    throw new InvalidOperationException($"A {transport} client failed (exit code {(process.HasExited ? process.ExitCode : -1)}).");
                }
            }
            return new Row(callsPerSecond, merged.GetValueAtPercentile(50) / 1000.0, merged.GetValueAtPercentile(99) / 1000.0);
        }
        finally
        {
            foreach (Process process in processes)
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }
                process.Dispose();
            }
            if (server is not null)
            {
                await server.DisposeAsync();
            }
            socketServer?.Dispose();
        }
    }

    private static Process StartClient(string transport, string target, int size, WaitStrategy wait, int warmupMs, int measureMs)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
        {
            start.ArgumentList.Add(typeof(ServerBenchmark).Assembly.Location);
        }
        foreach (string argument in new[] { "--server-client", transport, target, size.ToString(CultureInfo.InvariantCulture),
                     warmupMs.ToString(CultureInfo.InvariantCulture), measureMs.ToString(CultureInfo.InvariantCulture), wait.ToString() })
        {
            start.ArgumentList.Add(argument);
        }
        return Process.Start(start) ?? throw new InvalidOperationException("The client process did not start.");
    }

    /// <summary>Reads lines until one starts with <paramref name="prefix"/>; a client that ends first fails the run.</summary>
    private static string Expect(Process process, string prefix)
    {
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line;
            }
            if (line.StartsWith("error", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"client {process.Id}: {line}");
            }
        }
        throw new InvalidOperationException($"client {process.Id} ended before '{prefix}'.");
    }
}
