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
/// Ping-pong between two real processes over PageRange: this program starts itself again as the peer, then measures
/// synchronous and async round trips of small MessagePack messages and a oneway stream.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        SampleOptions options;
        try
        {
            options = SampleOptions.Parse(args);
        }
        catch (ArgumentException error)
        {
            Console.Error.WriteLine(error.Message);
            Console.Error.WriteLine(SampleOptions.Usage);
            return 2;
        }
        if (options.Help)
        {
            Console.WriteLine(SampleOptions.Usage);
            return 0;
        }
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

/// <summary>The measuring side: listens, starts the peer, runs the three phases, prints the table.</summary>
internal static class Host
{
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
            await AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async context =>
                {
                    results.Add(SyncPingPong(connection, options, context.AddTask("sync Call<Ping, Pong>", maxValue: options.Count)));
                    results.Add(await AsyncPingPong(connection, options, context.AddTask("await CallAsync<Ping, Pong>", maxValue: options.Count)));
                    results.Add(OnewayStream(connection, options, context.AddTask($"oneway stream of {options.StreamSize} B", maxValue: options.Duration.TotalMilliseconds)));
                });
            PrintTable(results, options, connection);
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

    private static Result SyncPingPong(PageRangeConnection connection, SampleOptions options, ProgressTask progress)
    {
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        var ping = new Ping(0, new byte[options.Size]);
        for (int i = 0; i < options.Warmup; i++)
        {
            connection.Call<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
        }
        var total = Stopwatch.StartNew();
        for (long i = 0; i < options.Count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Pong pong = connection.Call<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            if (pong.Seq != i)
            {
                throw new InvalidOperationException($"Pong {pong.Seq} answered ping {i}.");
            }
            if ((i & 1023) == 0)
            {
                progress.Value = i;
            }
        }
        progress.Value = options.Count;
        return Result.ForLatency("sync Call", histogram, options.Count, total.Elapsed);
    }

    private static async Task<Result> AsyncPingPong(PageRangeConnection connection, SampleOptions options, ProgressTask progress)
    {
        var histogram = new LongHistogram(TimeStamp.Hours(1), 3);
        var ping = new Ping(0, new byte[options.Size]);
        for (int i = 0; i < options.Warmup; i++)
        {
            await connection.CallAsync<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
        }
        var total = Stopwatch.StartNew();
        for (long i = 0; i < options.Count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            Pong pong = await connection.CallAsync<Ping, Pong>(ping with { Seq = i }, Codes.Ping);
            histogram.RecordValue(Stopwatch.GetTimestamp() - start);
            if (pong.Seq != i)
            {
                throw new InvalidOperationException($"Pong {pong.Seq} answered ping {i}.");
            }
            if ((i & 1023) == 0)
            {
                progress.Value = i;
            }
        }
        progress.Value = options.Count;
        return Result.ForLatency("await CallAsync", histogram, options.Count, total.Elapsed);
    }

    private static Result OnewayStream(PageRangeConnection connection, SampleOptions options, ProgressTask progress)
    {
        byte[] payload = new byte[options.StreamSize];
        Random.Shared.NextBytes(payload);
        ulong checksum = Checksum.Of(payload);
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < options.Duration)
        {
            for (int i = 0; i < 256; i++)
            {
                connection.SendOneway(Codes.Stream, payload);
            }
            sent += 256;
            progress.Value = clock.Elapsed.TotalMilliseconds;
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
        progress.Value = progress.MaxValue;
        if (report.Messages != sent || report.Checksum != checksum * (ulong)sent)
        {
            throw new InvalidOperationException($"The peer received {report.Messages} of {sent} messages, or their checksum differs.");
        }
        return Result.ForThroughput($"oneway {options.StreamSize} B", sent, report.Bytes, elapsed);
    }

    private static void PrintTable(List<Result> results, SampleOptions options, PageRangeConnection connection)
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
    }
}

/// <summary>One row of the final table.</summary>
internal sealed record Result(string Phase, long Messages, double P50Us, double P99Us, double P999Us, double MaxUs, double MessagesPerSecond, double GigabytesPerSecond)
{
    public static Result ForLatency(string phase, LongHistogram histogram, long messages, TimeSpan elapsed)
    {
        double Us(double percentile) => histogram.GetValueAtPercentile(percentile) * 1e6 / Stopwatch.Frequency;
        return new Result(phase, messages, Us(50), Us(99), Us(99.9), histogram.GetMaxValue() * 1e6 / Stopwatch.Frequency, messages / elapsed.TotalSeconds, double.NaN);
    }

    public static Result ForThroughput(string phase, long messages, long bytes, TimeSpan elapsed) =>
        new(phase, messages, double.NaN, double.NaN, double.NaN, double.NaN, messages / elapsed.TotalSeconds, bytes / elapsed.TotalSeconds / 1e9);

    public string[] Cells() =>
    [
        Phase, Messages.ToString("N0", CultureInfo.InvariantCulture), Micros(P50Us), Micros(P99Us), Micros(P999Us), Micros(MaxUs),
        MessagesPerSecond.ToString("N0", CultureInfo.InvariantCulture),
        double.IsNaN(GigabytesPerSecond) ? "" : GigabytesPerSecond.ToString("F2", CultureInfo.InvariantCulture),
    ];

    /// <summary>A plain line per phase, easy to grep: "latency: sync Call p50 3.1 us ..." or "throughput: ...".</summary>
    public string Summary() => double.IsNaN(P50Us)
        ? string.Create(CultureInfo.InvariantCulture, $"throughput: {Phase} {MessagesPerSecond:F0} messages/s {GigabytesPerSecond:F3} GB/s")
        : string.Create(CultureInfo.InvariantCulture, $"latency: {Phase} p50 {P50Us:F2} us p99 {P99Us:F2} us p99.9 {P999Us:F2} us");

    private static string Micros(double value) =>
        double.IsNaN(value) ? "" : string.Create(CultureInfo.InvariantCulture, $"{value:F2} µs");
}

/// <summary>The answering side: replies to pings, counts the stream, exits on Quit or when the host is gone.</summary>
internal static class Peer
{
    /// <summary>The exit code of a peer that quits on purpose (<c>--peer-exit-after</c>), to test the host's handling.</summary>
    public const int FaultExitCode = 17;

    public static int Run(string name, SampleOptions options)
    {
        if (options.PeerExitAfter == 0)
        {
            return FaultExitCode;
        }
        long pings = 0;
        var connectionOptions = new PageRangeOptions { WaitStrategy = options.WaitStrategy };
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, connectionOptions).AsTask().GetAwaiter().GetResult();
        long messages = 0;
        long bytes = 0;
        ulong checksum = 0;
        while (true)
        {
            Transaction transaction;
            try
            {
                transaction = connection.Receive();
            }
            catch (PeerDiedException)
            {
                return 0;
            }
            using (transaction)
            {
                switch (transaction.Code)
                {
                    case Codes.Ping:
                        if (++pings == options.PeerExitAfter)
                        {
                            // A crash in the middle of a call: no reply, no goodbye.
                            Environment.Exit(FaultExitCode);
                        }
                        transaction.Reply(new Pong(transaction.Deserialize<Ping>().Seq));
                        break;
                    case Codes.Stream:
                        messages++;
                        bytes += transaction.Length;
                        checksum += Checksum.Of(transaction.Payload);
                        break;
                    case Codes.StreamEnd:
                        connection.SendOneway(new StreamReport(messages, bytes, checksum), Codes.StreamEnd);
                        break;
                    case Codes.Quit:
                        return 0;
                    default:
                        break;
                }
            }
        }
    }
}

/// <summary>A checksum that touches every byte: the sum of the payload's 8-byte words plus its tail.</summary>
internal static class Checksum
{
    public static ulong Of(ReadOnlySpan<byte> bytes)
    {
        ulong sum = 0;
        foreach (ulong word in MemoryMarshal.Cast<byte, ulong>(bytes))
        {
            sum += word;
        }
        for (int i = bytes.Length & ~7; i < bytes.Length; i++)
        {
            sum += bytes[i];
        }
        return sum;
    }
}

/// <summary>The sample's command line.</summary>
internal sealed class SampleOptions
{
    public const string Usage =
        "usage: dotnet run -c Release --project samples/PingPong -- [--count N] [--size BYTES] [--stream-size BYTES] [--duration SECONDS] [--wait busy-spin|spin-then-park|park] [--dump]";

    public long Count { get; private set; } = 100_000;

    public int Warmup { get; private set; } = 2_000;

    public int Size { get; private set; } = 32;

    public int StreamSize { get; private set; } = 4096;

    public TimeSpan Duration { get; private set; } = TimeSpan.FromSeconds(3);

    public WaitStrategy WaitStrategy { get; private set; } = WaitStrategy.SpinThenPark;

    public bool Dump { get; private set; }

    public bool Help { get; private set; }

    public string? PeerName { get; private set; }

    /// <summary>Hidden, for tests: the peer exits after this many pings (0: before connecting).</summary>
    public long? PeerExitAfter { get; private set; }

    public static SampleOptions Parse(string[] args)
    {
        var options = new SampleOptions();
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--count":
                    options.Count = long.Parse(Next(), CultureInfo.InvariantCulture);
                    options.Warmup = (int)Math.Min(options.Warmup, options.Count);
                    break;
                case "--size":
                    options.Size = int.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--stream-size":
                    options.StreamSize = int.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--duration":
                    options.Duration = TimeSpan.FromSeconds(double.Parse(Next(), CultureInfo.InvariantCulture));
                    break;
                case "--wait":
                    options.WaitStrategy = Next().Replace("-", "", StringComparison.Ordinal).ToUpperInvariant() switch
                    {
                        "BUSYSPIN" => WaitStrategy.BusySpin,
                        "SPINTHENPARK" => WaitStrategy.SpinThenPark,
                        "PARK" => WaitStrategy.Park,
                        var other => throw new ArgumentException($"Unknown wait strategy '{other}'."),
                    };
                    break;
                case "--dump":
                    options.Dump = true;
                    break;
                case "--peer":
                    options.PeerName = Next();
                    break;
                case "--peer-exit-after":
                    options.PeerExitAfter = long.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--help" or "-h":
                    options.Help = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'.");
            }
        }
        if (options.Count <= 0 || options.Size < 0 || options.StreamSize <= 0 || options.Duration <= TimeSpan.Zero)
        {
            throw new ArgumentException("--count, --stream-size and --duration must be positive and --size not negative.");
        }
        return options;
    }
}
