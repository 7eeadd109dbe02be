using System.Diagnostics;
using System.Globalization;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Benchmarks.Grpc;

/// <summary>
/// <c>grpc-profile [--wait park|spin-then-park] [--calls n] [--stream-messages n]</c>: server and client in this one
/// process, and what each unary call and each streamed message costs beside its wall time: process CPU, heap bytes,
/// thread-pool work items and context switches per call or message. Those counters say where the time goes (a hop to
/// the thread pool is a work item and usually a context switch; a wake of a parked thread is a context switch).
/// Not a timed test.
/// </summary>
internal static class GrpcProfile
{
    /// <summary>The command's name, the first argument.</summary>
    public const string CommandName = "grpc-profile";

    /// <summary>A plain PageRange handler beside the gRPC methods: the floor a unary gRPC call is compared with.</summary>
    private const uint RawCode = 7;

    /// <summary>Runs it; arguments after the command name.</summary>
    public static int Run(string[] args)
    {
        WaitStrategy wait = WaitStrategy.Park;
        int calls = 20_000;
        int messages = 100_000;
        for (int i = 0; i + 1 < args.Length; i += 2)
        {
            switch (args[i])
            {
                case "--wait":
                    wait = args[i + 1] == "spin-then-park" ? WaitStrategy.SpinThenPark : WaitStrategy.Park;
                    break;
                case "--calls":
                    calls = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                case "--stream-messages":
                    messages = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
                    break;
                default:
                    Console.Error.WriteLine($"grpc-profile: unknown option {args[i]}");
                    return 2;
            }
        }
        return RunAsync(wait, calls, messages).GetAwaiter().GetResult();
    }

    private static async Task<int> RunAsync(WaitStrategy wait, int calls, int messages)
    {
        string name = $"grpc-profile-{Environment.ProcessId}";
        var connection = new PageRangeOptions { WaitStrategy = wait, RegionSize = 8L << 20 };
        await using PageRangeServer server = PageRangeServer.Start(name, new PageRangeServerOptions
        {
            MaxThreads = 4,
            StartShrinkerMonitor = false,
            ConnectionOptions = connection,
        }, builder => builder.MapGrpcService(new BenchService()).Map(RawCode, static (transaction, _) => transaction.Reply(transaction.Payload)));
        await using PageRangeCallInvoker invoker = PageRangeGrpcChannel.Create(name, new PageRangeGrpcChannelOptions { ConnectionOptions = connection });
        var client = new GrpcBench.GrpcBenchClient(invoker);
        var request = new BenchPayload { Data = UnsafeByteOperations.UnsafeWrap(new byte[64]) };
        var report = new StringBuilder();
        report.AppendLine(CultureInfo.InvariantCulture, $"grpc-profile: in one process, wait {wait}, {Environment.ProcessorCount} cores, load {File.ReadLines("/proc/loadavg").First()}");
        report.AppendLine("| what | n | wall µs each | CPU µs each | bytes each | work items each | ctx switches each |");
        report.AppendLine("|---|--:|--:|--:|--:|--:|--:|");

        for (int i = 0; i < 2000; i++)
        {
            await client.UnaryAsync(request);
            client.Unary(request);
        }
        await using (PageRangeConnection raw = await PageRangeConnection.ConnectAsync(name, connection))
        {
            byte[] payload = new byte[64];
            for (int i = 0; i < 2000; i++)
            {
                raw.Call(RawCode, payload).Dispose();
            }
            Row(report, "raw PageRange call 64 B (the floor)", calls, () =>
            {
                for (int i = 0; i < calls; i++)
                {
                    raw.Call(RawCode, payload).Dispose();
                }
            });
        }
        Row(report, "unary 64 B, async", calls, () =>
        {
            for (int i = 0; i < calls; i++)
            {
                client.UnaryAsync(request).ResponseAsync.GetAwaiter().GetResult();
            }
        });
        Row(report, "unary 64 B, blocking", calls, () =>
        {
            for (int i = 0; i < calls; i++)
            {
                client.Unary(request);
            }
        });
        await StreamAsync(client, 5000);
        Row(report, "server stream 1 KiB, per message", messages, () => StreamAsync(client, messages).GetAwaiter().GetResult());
        Console.Write(report.ToString());
        return 0;
    }

    private static async Task StreamAsync(GrpcBench.GrpcBenchClient client, int messages)
    {
        using AsyncServerStreamingCall<BenchPayload> call = client.Stream(new BenchStreamRequest { Count = messages, Size = 1024 });
        int received = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            received++;
        }
        if (received != messages)
        {
            throw new InvalidOperationException($"the stream ended after {received} of {messages} messages.");
        }
    }

    private static void Row(StringBuilder report, string what, int count, Action run)
    {
        using Process self = Process.GetCurrentProcess();
        TimeSpan cpu = self.TotalProcessorTime;
        long bytes = GC.GetTotalAllocatedBytes(precise: true);
        long items = ThreadPool.CompletedWorkItemCount;
        long switches = ContextSwitches();
        long start = Stopwatch.GetTimestamp();
        run();
        TimeSpan wall = Stopwatch.GetElapsedTime(start);
        self.Refresh();
        double n = count;
        report.AppendLine(CultureInfo.InvariantCulture,
            $"| {what} | {count} | {wall.TotalMicroseconds / n:F1} | {(self.TotalProcessorTime - cpu).TotalMicroseconds / n:F1} | {(GC.GetTotalAllocatedBytes(precise: true) - bytes) / n:F0} | {(ThreadPool.CompletedWorkItemCount - items) / n:F2} | {(ContextSwitches() - switches) / n:F2} |");
    }

    /// <summary>Voluntary and involuntary context switches of every thread of this process.</summary>
    private static long ContextSwitches()
    {
        long total = 0;
        foreach (string task in Directory.EnumerateDirectories("/proc/self/task"))
        {
            try
            {
                foreach (string line in File.ReadLines(Path.Combine(task, "status")))
                {
                    if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                    {
                        total += long.Parse(line.AsSpan(line.IndexOf(':') + 1).Trim(), CultureInfo.InvariantCulture);
                    }
                }
            }
            catch (IOException)
            {
                // The thread ended meanwhile.
            }
        }
        return total;
    }
}
