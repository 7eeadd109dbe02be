using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Net.Sockets;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using PageRange.Grpc;
using PageRange.Transport;

namespace PageRange.Benchmarks.Grpc;

/// <summary>
/// <c>grpc</c>: the same generated client calling the same service in a second process over gRPC on PageRange, on
/// Kestrel over a Unix domain socket, and on Kestrel over a named pipe where the platform has that transport (Kestrel's
/// named pipes are Windows-only: the row then says why it is missing). Unary round trips of 64 B and 16 KiB (p50 and
/// p99 of every call, rounds interleaved across transports) and a server stream of 1 KiB messages (median msgs/s of the
/// rounds), with the ratios of each baseline to PageRange, in one run. Beside them, measured in the same rounds between
/// the same two processes with the same wait strategy: the blocking gRPC call (<c>client.Unary</c>) and PageRange's own
/// <c>CallAsync</c> and <c>Call</c> to a plain handler on the same server, so a reader sees what gRPC adds on the
/// transport. Not a timed test.
/// </summary>
internal static class GrpcBenchmark
{
    /// <summary>The command's name, the first argument.</summary>
    public const string CommandName = "grpc";

    private static readonly int[] s_unarySizes = [64, 16 << 10];
    private const int StreamMessageSize = 1024;

    private static readonly Option<int> s_calls = OptionRules.Positive(new Option<int>("--calls")
    {
        Description = "Unary calls measured per size, transport and round.",
        DefaultValueFactory = _ => 5000,
        HelpName = "n",
    });

    private static readonly Option<int> s_messages = OptionRules.Positive(new Option<int>("--stream-messages")
    {
        Description = "1 KiB messages of each server stream.",
        DefaultValueFactory = _ => 50_000,
        HelpName = "n",
    });

    private static readonly Option<int> s_rounds = OptionRules.Positive(new Option<int>("--rounds")
    {
        Description = "Rounds; each measures every transport in turn, so a change in the machine's load hits all of them.",
        DefaultValueFactory = _ => 5,
        HelpName = "n",
    });

    private static readonly Option<string> s_wait = new Option<string>("--wait")
    {
        Description = "How PageRange's processes wait: park or spin-then-park.",
        DefaultValueFactory = _ => "spin-then-park",
        HelpName = "park|spin-then-park",
    }.AcceptOnlyFromAmong("park", "spin-then-park");

    private static readonly Option<string> s_out = new("--out")
    {
        Description = "Where grpc-results.md and grpc-results.csv go (default: not written).",
        HelpName = "dir",
    };

    private static readonly Option<bool> s_quick = new("--quick")
    {
        Description = "300 calls, 2000 stream messages, 1 round (the smoke test's mode); overrides those three options.",
    };

    /// <summary>The <c>grpc</c> command; <paramref name="args"/> (after <c>grpc</c>) go into the results' command line.</summary>
    public static Command CreateCommand(string[] args)
    {
        var command = new Command(CommandName,
            "gRPC over PageRange beside gRPC over a Unix socket and a named pipe (Kestrel server in a second process, GrpcChannel client): " +
            "unary 64 B and 16 KiB round trips, a server stream of 1 KiB messages, and their ratios. Not a timed test.")
        {
            s_calls, s_messages, s_rounds, s_wait, s_out, s_quick,
        };
        command.SetAction((parse, _) =>
        {
            bool quick = parse.GetValue(s_quick);
            return RunAsync(
                quick ? 300 : parse.GetValue(s_calls),
                quick ? 2000 : parse.GetValue(s_messages),
                quick ? 1 : parse.GetValue(s_rounds),
                parse.GetValue(s_wait) == "park" ? WaitStrategy.Park : WaitStrategy.SpinThenPark,
                parse.GetValue(s_out),
                args);
        });
        return command;
    }

    /// <summary>
    /// One row: how a unary call of a size is made (<see cref="Unary"/>) and, for a gRPC client, the server stream
    /// (<see cref="Stream"/>; null: the row measures no stream).
    /// </summary>
    private sealed class Target(string transport, Func<int, Func<Task>> unary, Func<int, Task<double>>? stream, IDisposable? owner)
    {
        public string Transport { get; } = transport;

        /// <summary>For a size, the action that makes one call of that size (the request is made once, outside the timing).</summary>
        public Func<int, Func<Task>> Unary { get; } = unary;

        public Func<int, Task<double>>? Stream { get; } = stream;

        public IDisposable? Owner { get; } = owner;

        public Dictionary<int, List<long>> UnaryTicks { get; } = [];

        public List<double> StreamRates { get; } = [];
    }

    private static async Task<int> RunAsync(int calls, int messages, int rounds, WaitStrategy wait, string? outDirectory, string[] args)
    {
        string load = File.ReadLines("/proc/loadavg").FirstOrDefault() ?? "n/a";
        string directory = Directory.CreateTempSubdirectory("pagerange-grpc-bench-").FullName;
        string name = $"bench-grpc-{Environment.ProcessId}";
        string socketPath = Path.Combine(directory, "kestrel.sock");
        string pipeName = $"pagerange-grpc-bench-{Environment.ProcessId}";
        using Process server = StartServer(name, socketPath, pipeName, wait);
        var targets = new List<Target>();
        try
        {
            string pipe = Expect(server, "pipe: ");
            Expect(server, "ready");
            var connectionOptions = new PageRangeOptions { WaitStrategy = wait, RegionSize = 8L << 20 };
            PageRangeCallInvoker invoker = PageRangeGrpcChannel.Create(name, new PageRangeGrpcChannelOptions { ConnectionOptions = connectionOptions });
            var client = new GrpcBench.GrpcBenchClient(invoker);
            targets.Add(new Target("pagerange", size => GrpcAsync(client, size), messages => StreamAsync(client, messages), invoker));
            targets.Add(new Target("pagerange blocking", size => GrpcBlocking(client, size), null, null));
            // The references: PageRange's own calls to a plain handler on the same server, from this process, over a
            // connection of their own with the same options: what the transport costs without gRPC on top.
            PageRangeConnection raw = await PageRangeConnection.ConnectAsync(name, connectionOptions);
            targets.Add(new Target("pagerange-raw CallAsync", size => RawAsync(raw, size), null, new DisposeAction(() => raw.Dispose())));
            targets.Add(new Target("pagerange-raw Call", size => RawBlocking(raw, size), null, null));
            // The same over a connection with a ReceiveAsync pending all the time, as a gRPC client's frame reader
            // keeps one: its background reader then holds the ring, and a blocking caller waits on it.
            PageRangeConnection receiving = await PageRangeConnection.ConnectAsync(name, connectionOptions);
            var stopReceiving = new CancellationTokenSource();
            Task pendingReceive = ReceiveUntilStoppedAsync(receiving, stopReceiving.Token);
            targets.Add(new Target("pagerange-raw CallAsync, receiving", size => RawAsync(receiving, size), null, new DisposeAction(() =>
            {
                stopReceiving.Cancel();
                pendingReceive.GetAwaiter().GetResult();
                receiving.Dispose();
            })));
            targets.Add(new Target("pagerange-raw Call, receiving", size => RawBlocking(receiving, size), null, null));
            GrpcChannel uds = Channel(() => UnixSocketStreamAsync(socketPath));
            var udsClient = new GrpcBench.GrpcBenchClient(uds.CreateCallInvoker());
            targets.Add(new Target("uds", size => GrpcAsync(udsClient, size), messages => StreamAsync(udsClient, messages), uds));
            string? pipeNote = null;
            if (pipe == "ok")
            {
                GrpcChannel named = Channel(() => NamedPipeStreamAsync(pipeName));
                var namedClient = new GrpcBench.GrpcBenchClient(named.CreateCallInvoker());
                targets.Add(new Target("named-pipe", size => GrpcAsync(namedClient, size), messages => StreamAsync(namedClient, messages), named));
            }
            else
            {
                pipeNote = pipe["unsupported ".Length..];
                Console.WriteLine($"named-pipe: no figure; Kestrel's named-pipe transport did not start on {Environment.OSVersion}: {pipeNote}");
            }

            // Warm-up: JIT, connections, pools and pages on both sides. Twice, with a pause between: the runtime
            // compiles the hot methods again, optimized, in the background about 100 ms after they got hot, and
            // without the pause the first round's first rows (gRPC over PageRange's) ran partly on unoptimized code.
            for (int pass = 0; pass < 2; pass++)
            {
                foreach (Target target in targets)
                {
                    await UnaryAsync(target, 64, Math.Min(calls, 500), null);
                    await UnaryAsync(target, 16 << 10, Math.Min(calls, 200), null);
                    if (target.Stream is not null)
                    {
                        await target.Stream(Math.Min(messages, 2000));
                    }
                }
                await Task.Delay(500);
            }
            for (int round = 0; round < rounds; round++)
            {
                foreach (int size in s_unarySizes)
                {
                    foreach (Target target in targets)
                    {
                        await UnaryAsync(target, size, calls, target.UnaryTicks.TryGetValue(size, out List<long>? list) ? list : target.UnaryTicks[size] = []);
                    }
                }
                foreach (Target target in targets)
                {
                    if (target.Stream is not null)
                    {
                        target.StreamRates.Add(await target.Stream(messages));
                    }
                }
            }
            string markdown = Report(targets, pipeNote, calls, messages, rounds, wait, load, args, out string csv);
            Console.WriteLine();
            Console.WriteLine(markdown);
            if (outDirectory is not null)
            {
                Directory.CreateDirectory(outDirectory);
                await File.WriteAllTextAsync(Path.Combine(outDirectory, "grpc-results.md"), markdown);
                await File.WriteAllTextAsync(Path.Combine(outDirectory, "grpc-results.csv"), csv);
            }
            return 0;
        }
        finally
        {
            foreach (Target target in targets)
            {
                target.Owner?.Dispose();
            }
            if (!server.HasExited)
            {
                server.Kill();
            }
            server.WaitForExit(10_000);
            Directory.Delete(directory, recursive: true);
        }
    }

    private static async Task UnaryAsync(Target target, int size, int calls, List<long>? ticks)
    {
        Func<Task> call = target.Unary(size);
        for (int i = 0; i < calls; i++)
        {
            long started = Stopwatch.GetTimestamp();
            await call();
            long took = Stopwatch.GetTimestamp() - started;
            ticks?.Add(took);
        }
    }

    private static Func<Task> GrpcAsync(GrpcBench.GrpcBenchClient client, int size)
    {
        var request = new BenchPayload { Data = UnsafeByteOperations.UnsafeWrap(new byte[size]) };
        return async () => Check("gRPC", size, (await client.UnaryAsync(request)).Data.Length);
    }

    private static Func<Task> GrpcBlocking(GrpcBench.GrpcBenchClient client, int size)
    {
        var request = new BenchPayload { Data = UnsafeByteOperations.UnsafeWrap(new byte[size]) };
        return () =>
        {
            Check("gRPC blocking", size, client.Unary(request).Data.Length);
            return Task.CompletedTask;
        };
    }

    private static Func<Task> RawAsync(PageRangeConnection connection, int size)
    {
        byte[] payload = new byte[size];
        return async () =>
        {
            using Transaction reply = await connection.CallAsync(GrpcBenchmarkServer.RawCode, payload);
            Check("raw CallAsync", size, reply.Length);
        };
    }

    private static Func<Task> RawBlocking(PageRangeConnection connection, int size)
    {
        byte[] payload = new byte[size];
        return () =>
        {
            using Transaction reply = connection.Call(GrpcBenchmarkServer.RawCode, payload);
            Check("raw Call", size, reply.Length);
            return Task.CompletedTask;
        };
    }

    private static async Task ReceiveUntilStoppedAsync(PageRangeConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                (await connection.ReceiveAsync(cancellationToken)).Dispose();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static void Check(string what, int size, int length)
    {
        if (length != size)
        {
            throw new InvalidOperationException($"{what}: a {size} B call came back with {length} B.");
        }
    }

    private static async Task<double> StreamAsync(GrpcBench.GrpcBenchClient client, int messages)
    {
        long started = Stopwatch.GetTimestamp();
        using AsyncServerStreamingCall<BenchPayload> call = client.Stream(new BenchStreamRequest { Count = messages, Size = StreamMessageSize });
        int received = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            received++;
        }
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (received != messages)
        {
            throw new InvalidOperationException($"the stream ended after {received} of {messages} messages.");
        }
        return messages / seconds;
    }

    private sealed class DisposeAction(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }

    private static string Report(List<Target> targets, string? pipeNote, int calls, int messages, int rounds, WaitStrategy wait, string load, string[] args, out string csv)
    {
        var table = new StringBuilder();
        var rows = new StringBuilder("transport,workload,size_bytes,p50_us,p99_us,msgs_per_s\n");
        Target pagerange = targets[0];
        table.AppendLine(CultureInfo.InvariantCulture, $"gRPC: {calls} unary calls per size, transport and round; server streams of {messages} x {StreamMessageSize} B; {rounds} rounds interleaved; PageRange wait {wait}; server in a second process; {Environment.ProcessorCount} cores; load average before: {load}; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        table.AppendLine();
        table.AppendLine("| transport | unary 64 B p50 µs | p99 µs | unary 16 KiB p50 µs | p99 µs | stream 1 KiB msgs/s (median) |");
        table.AppendLine("|---|--:|--:|--:|--:|--:|");
        foreach (Target target in targets)
        {
            (double p50Small, double p99Small) = Percentiles(target.UnaryTicks[s_unarySizes[0]]);
            (double p50Large, double p99Large) = Percentiles(target.UnaryTicks[s_unarySizes[1]]);
            string rate = target.Stream is null ? "" : Median(target.StreamRates).ToString("N0", CultureInfo.InvariantCulture);
            table.AppendLine(CultureInfo.InvariantCulture, $"| {target.Transport} | {p50Small:F1} | {p99Small:F1} | {p50Large:F1} | {p99Large:F1} | {rate} |");
            string key = target.Transport.Replace(' ', '-');
            rows.AppendLine(CultureInfo.InvariantCulture, $"{key},unary,{s_unarySizes[0]},{p50Small:F2},{p99Small:F2},0");
            rows.AppendLine(CultureInfo.InvariantCulture, $"{key},unary,{s_unarySizes[1]},{p50Large:F2},{p99Large:F2},0");
            if (target.Stream is not null)
            {
                rows.AppendLine(CultureInfo.InvariantCulture, $"{key},server-stream,{StreamMessageSize},0,0,{Median(target.StreamRates):F0}");
            }
        }
        if (pipeNote is not null)
        {
            table.AppendLine("| named-pipe | n/a | n/a | n/a | n/a | n/a |");
        }
        table.AppendLine();
        table.AppendLine("gRPC over PageRange against PageRange's own calls in this run (p50 gRPC / p50 raw: what gRPC adds on the transport; 1 is none):");
        table.AppendLine();
        Target blocking = Find(targets, "pagerange blocking");
        Target rawAsync = Find(targets, "pagerange-raw CallAsync");
        Target rawBlocking = Find(targets, "pagerange-raw Call");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"- async (UnaryAsync / CallAsync): 64 B x{Ratio(pagerange, rawAsync, s_unarySizes[0]):F2}, 16 KiB x{Ratio(pagerange, rawAsync, s_unarySizes[1]):F2}");
        table.AppendLine(CultureInfo.InvariantCulture,
            $"- blocking (Unary / Call): 64 B x{Ratio(blocking, rawBlocking, s_unarySizes[0]):F2}, 16 KiB x{Ratio(blocking, rawBlocking, s_unarySizes[1]):F2}");
        table.AppendLine();
        table.AppendLine("Ratios (baseline / gRPC over PageRange: latency above 1 means PageRange is faster; for the stream, PageRange msgs/s / baseline msgs/s):");
        table.AppendLine();
        foreach (Target baseline in targets.Where(static target => target.Stream is not null).Skip(1))
        {
            table.AppendLine(CultureInfo.InvariantCulture,
                $"- {baseline.Transport}: unary 64 B p50 x{Ratio(baseline, pagerange, s_unarySizes[0]):F2} (blocking x{Ratio(baseline, blocking, s_unarySizes[0]):F2}), unary 16 KiB p50 x{Ratio(baseline, pagerange, s_unarySizes[1]):F2} (blocking x{Ratio(baseline, blocking, s_unarySizes[1]):F2}), stream x{Median(pagerange.StreamRates) / Median(baseline.StreamRates):F2}");
        }
        if (pipeNote is not null)
        {
            table.AppendLine(CultureInfo.InvariantCulture, $"- named-pipe: no figure. Kestrel's named-pipe transport did not start here: {pipeNote}");
        }
        table.AppendLine();
        table.AppendLine("command: dotnet run -c Release --project benchmarks/PageRange.Benchmarks -- grpc " + string.Join(' ', args));
        csv = rows.ToString();
        return table.ToString();
    }

    private static Target Find(List<Target> targets, string transport) => targets.First(target => target.Transport == transport);

    private static double Ratio(Target baseline, Target pagerange, int size) =>
        Percentiles(baseline.UnaryTicks[size]).P50 / Percentiles(pagerange.UnaryTicks[size]).P50;

    private static (double P50, double P99) Percentiles(List<long> ticks)
    {
        long[] sorted = [.. ticks];
        Array.Sort(sorted);
        double perMicro = Stopwatch.Frequency / 1e6;
        return (sorted[(sorted.Length - 1) / 2] / perMicro, sorted[(int)((sorted.Length - 1) * 0.99)] / perMicro);
    }

    private static double Median(List<double> values)
    {
        double[] sorted = [.. values];
        Array.Sort(sorted);
        return sorted[(sorted.Length - 1) / 2];
    }

    private static GrpcChannel Channel(Func<ValueTask<Stream>> connect) =>
        GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectCallback = (_, _) => connect() },
            DisposeHttpClient = true,
        });

    private static async ValueTask<Stream> UnixSocketStreamAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path));
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async ValueTask<Stream> NamedPipeStreamAsync(string pipeName)
    {
        var pipe = new NamedPipeClientStream(".", pipeName, PipeDirection.InOut, PipeOptions.WriteThrough | PipeOptions.Asynchronous);
        try
        {
            await pipe.ConnectAsync();
            return pipe;
        }
        catch
        {
            await pipe.DisposeAsync();
            throw;
        }
    }

    private static Process StartServer(string name, string socketPath, string pipeName, WaitStrategy wait)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
        };
        if (Path.GetFileNameWithoutExtension(start.FileName) == "dotnet")
        {
            start.ArgumentList.Add(typeof(GrpcBenchmark).Assembly.Location);
        }
        foreach (string argument in new[] { "--grpc-server", name, socketPath, pipeName, wait.ToString() })
        {
            start.ArgumentList.Add(argument);
        }
        return Process.Start(start) ?? throw new InvalidOperationException("The gRPC server process did not start.");
    }

    /// <summary>Reads the server's lines until one starts with <paramref name="prefix"/>; returns the rest of it.</summary>
    private static string Expect(Process process, string prefix)
    {
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line[prefix.Length..];
            }
        }
        throw new InvalidOperationException($"The gRPC server {process.Id} ended before '{prefix}'.");
    }
}
