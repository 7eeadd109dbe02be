using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using HdrHistogram;
using PageRange;
using PageRange.Serialization;
using PageRange.Transport;
using Spectre.Console;

namespace PingPong;

/// <summary>
/// The measuring side: listens, starts the peer, runs the phases (sync, the same over a Unix socket, async, oneway),
/// prints the table and the ratio.
/// </summary>
internal static class Host
{
    private const string SyncPhase = "sync Call";

    private const string AsyncPhase = "await CallAsync";

    public static async Task<int> RunAsync(SampleOptions options)
    {
        string name = $"pingpong-{Environment.ProcessId}";
        // A bounded call timeout: a peer that hangs ends the run with an error instead of a hang.
        var connectionOptions = new PageRangeOptions { WaitStrategy = options.WaitStrategy, CallTimeout = TimeSpan.FromSeconds(10) };
        await using PageRangeListener listener = PageRangeListener.Listen(name, connectionOptions);

        Process peer;
        try
        {
            peer = StartPeer(name, options);
        }
        catch (Exception error) when (error is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: the peer process could not be started ({error.Message.TrimEnd('.')}).");
            return 1;
        }
        using Process owned = peer;
        try
        {
            using var acceptTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Task<PageRangeConnection> accept = listener.AcceptAsync(acceptTimeout.Token).AsTask();
            Task exited = peer.WaitForExitAsync(acceptTimeout.Token);
            if (await Task.WhenAny(accept, exited) != accept)
            {
                Console.Error.WriteLine($"error: the peer process exited before connecting (exit code {(peer.HasExited ? peer.ExitCode : -1)}).");
                return 1;
            }
            await using PageRangeConnection connection = await accept;
            var results = new List<Result>();
            var jit = new JitSettle(() => PeerCompiledMethods(connection), options.JitSettle);
            await AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async context =>
                {
                    results.Add(await SyncPingPong(connection, options, jit, context.AddTask("sync Call<Ping, Pong>", maxValue: options.Count)));
                    if (options.Socket)
                    {
                        results.Add(await SocketPingPong.RunAsync(name, options, jit, context.AddTask("sync over a Unix socket", maxValue: options.Count)));
                    }
                    results.Add(await AsyncPingPong(connection, options, jit, context.AddTask("await CallAsync<Ping, Pong>", maxValue: options.Count)));
                    results.Add(await OnewayStream(connection, options, jit, context.AddTask($"oneway stream of {options.StreamSize} B", maxValue: options.Duration.TotalMilliseconds)));
                });
            PrintTable(results, options, connection, jit);
            if (options.Dump)
            {
                Console.WriteLine(connection.DumpState());
            }
            connection.SendOneway(Codes.Quit, []);
            if (!await WaitForExit(peer, TimeSpan.FromSeconds(10)))
            {
                Console.Error.WriteLine("error: the peer process did not exit after the run.");
                return 1;
            }
            return 0;
        }
        catch (PeerDiedException)
        {
            Console.Error.WriteLine($"error: the peer process {peer.Id} died during the run{ExitCodeOf(peer)}.");
            return 1;
        }
        catch (TimeoutException)
        {
            Console.Error.WriteLine($"error: the peer process {peer.Id} stopped answering for 10 seconds.");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("error: the peer process did not connect within 30 seconds.");
            return 1;
        }
        catch (Exception error) when (error is System.Net.Sockets.SocketException or EndOfStreamException)
        {
            Console.Error.WriteLine($"error: the Unix socket phase failed: {error.Message.TrimEnd('.')}.");
            return 1;
        }
        catch (Exception error) when (error is PageRangeException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: the run failed: {error.Message.TrimEnd('.')}.");
            return 1;
        }
        finally
        {
            if (!peer.HasExited)
            {
                peer.Kill(entireProcessTree: true);
            }
        }
    }

    private static string ExitCodeOf(Process peer) =>
        peer.WaitForExit(TimeSpan.FromSeconds(2)) ? $" (exit code {peer.ExitCode})" : "";

    private static async Task<bool> WaitForExit(Process process, TimeSpan timeout)
    {
        using var source = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(source.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static Process StartPeer(string name, SampleOptions options)
    {
        // Under `dotnet run` the process path is the app host; under `dotnet PingPong.dll` it is dotnet itself.
        string processPath = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(processPath) { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(processPath) == "dotnet")
        {
            start.ArgumentList.Add(typeof(Program).Assembly.Location);
        }
        start.ArgumentList.Add("--peer");
        start.ArgumentList.Add(name);
        start.ArgumentList.Add("--wait");
        start.ArgumentList.Add(options.WaitStrategy.ToString());
        if (options.PeerExitAfter is { } exitAfter)
        {
            start.ArgumentList.Add("--peer-exit-after");
            start.ArgumentList.Add(exitAfter.ToString(CultureInfo.InvariantCulture));
        }
        return Process.Start(start) ?? throw new InvalidOperationException("The peer process could not be started.");
    }

    /// <summary>Asks the peer how many methods its JIT has compiled so far (the warm-up's end needs both processes quiet).</summary>
    private static long PeerCompiledMethods(PageRangeConnection connection)
    {
        using Transaction answer = connection.Call(Codes.CompiledMethods, []);
        return answer.Deserialize<JitReport>().CompiledMethods;
    }

    private static async Task<Result> SyncPingPong(PageRangeConnection connection, SampleOptions options, JitSettle jit, ProgressTask progress)
    {
        var ping = new Ping(0, new byte[options.Size]);
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        SyncRoundTrips(connection, ping, histogram, options.Warmup, long.MaxValue, progress: null);
        // The warm-up runs the measuring loop itself: code it leaves cold would be recompiled during the measurement.
        await jit.RunAsync(SyncPhase, progress, duration =>
        {
            SyncRoundTrips(connection, ping, histogram, long.MaxValue, JitSettle.DeadlineAfter(duration), progress);
            return Task.CompletedTask;
        });
        histogram.Reset();
        var total = Stopwatch.StartNew();
        SyncRoundTrips(connection, ping, histogram, options.Count, long.MaxValue, progress);
        return Result.ForLatency(SyncPhase, histogram, options.Count, total.Elapsed);
    }

    /// <summary>Round trips until <paramref name="count"/> or the <paramref name="deadline"/> (a <see cref="Stopwatch"/> timestamp), each recorded.</summary>
    private static void SyncRoundTrips(PageRangeConnection connection, Ping ping, LongHistogram histogram, long count, long deadline, ProgressTask? progress)
    {
        for (long i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            if (start >= deadline)
            {
                return;
            }
            Pong pong = connection.Call<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            Check(pong, i);
            if ((i & 1023) == 0)
            {
                progress?.Value = i;
            }
        }
        progress?.Value = count;
    }

    private static async Task<Result> AsyncPingPong(PageRangeConnection connection, SampleOptions options, JitSettle jit, ProgressTask progress)
    {
        var ping = new Ping(0, new byte[options.Size]);
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        await AsyncRoundTrips(connection, ping, histogram, options.Warmup, long.MaxValue, progress: null);
        await jit.RunAsync(AsyncPhase, progress, duration =>
            AsyncRoundTrips(connection, ping, histogram, long.MaxValue, JitSettle.DeadlineAfter(duration), progress));
        histogram.Reset();
        var total = Stopwatch.StartNew();
        await AsyncRoundTrips(connection, ping, histogram, options.Count, long.MaxValue, progress);
        return Result.ForLatency(AsyncPhase, histogram, options.Count, total.Elapsed);
    }

    /// <inheritdoc cref="SyncRoundTrips"/>
    private static async Task AsyncRoundTrips(PageRangeConnection connection, Ping ping, LongHistogram histogram, long count, long deadline, ProgressTask? progress)
    {
        for (long i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            if (start >= deadline)
            {
                return;
            }
            Pong pong = await connection.CallAsync<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            Check(pong, i);
            if ((i & 1023) == 0)
            {
                progress?.Value = i;
            }
        }
        progress?.Value = count;
    }

    private static void Check(Pong pong, long seq)
    {
        if (pong.Seq != seq)
        {
            throw new InvalidOperationException($"Pong {pong.Seq} answered ping {seq}.");
        }
    }

    private static async Task<Result> OnewayStream(PageRangeConnection connection, SampleOptions options, JitSettle jit, ProgressTask progress)
    {
        string phase = $"oneway {options.StreamSize} B";
        byte[] payload = new byte[options.StreamSize];
        Random.Shared.NextBytes(payload);
        await jit.RunAsync(phase, progress, duration =>
        {
            Stream(connection, payload, duration, progress);
            return Task.CompletedTask;
        });
        (long sent, StreamReport report, TimeSpan elapsed) = Stream(connection, payload, options.Duration, progress);
        progress.Value = progress.MaxValue;
        return Result.ForThroughput(phase, sent, report.Bytes, elapsed);
    }

    /// <summary>Sends oneways of <paramref name="payload"/> for <paramref name="duration"/>, then checks the peer's count of them.</summary>
    private static (long Sent, StreamReport Report, TimeSpan Elapsed) Stream(
        PageRangeConnection connection, byte[] payload, TimeSpan duration, ProgressTask? progress)
    {
        ulong checksum = Checksum.Of(payload);
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            for (int i = 0; i < 256; i++)
            {
                connection.SendOneway(Codes.Stream, payload);
            }
            sent += 256;
            progress?.Value = clock.Elapsed.TotalMilliseconds;
        }
        // The end marker is oneway too: oneway messages are delivered in order, while a call could overtake the ones
        // still queued. The peer answers with a oneway report.
        connection.SendOneway(Codes.StreamEnd, []);
        StreamReport report;
        using (Transaction answer = connection.Receive())
        {
            report = answer.Deserialize<StreamReport>();
        }
        TimeSpan elapsed = clock.Elapsed;
        if (report.Messages != sent || report.Checksum != checksum * (ulong)sent)
        {
            throw new InvalidOperationException($"The peer received {report.Messages} of {sent} messages, or their checksum differs.");
        }
        return (sent, report, elapsed);
    }

    private static void PrintTable(List<Result> results, SampleOptions options, PageRangeConnection connection, JitSettle jit)
    {
        var table = new Table().Title($"PageRange ping-pong, pid {Environment.ProcessId} <-> pid {connection.PeerPid}, wait: {options.WaitStrategy}");
        table.AddColumns("phase", "messages", "p50", "p99", "p99.9", "max", "messages/s", "GB/s");
        foreach (Result result in results)
        {
            table.AddRow(result.Cells());
        }
        AnsiConsole.Write(table);
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}");
        foreach (Result result in results)
        {
            Console.WriteLine(result.Summary());
        }
        foreach (JitSettle.Settled phase in jit.Phases)
        {
            Console.WriteLine(phase.Summary());
        }
        if (results.Find(r => r.Phase == SyncPhase) is { } pageRange && results.Find(r => r.Phase == SocketPingPong.Phase) is { } socket)
        {
            Console.WriteLine(Result.Ratio(pageRange, socket));
        }
    }
}
