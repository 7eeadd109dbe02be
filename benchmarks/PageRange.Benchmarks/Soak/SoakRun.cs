using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Benchmarks.Soak;

/// <summary>
/// One soak: peer lifetimes one after another until the duration is up. Each lifetime starts a peer, runs sender threads
/// and a receiver against it, kills it with SIGKILL after a random time, and checks what the peer acknowledged.
/// </summary>
internal sealed class SoakRun(SoakSettings settings)
{
    private readonly Random _random = new(settings.Seed);
    private readonly Stopwatch _clock = new();
    private readonly MeterListener _listener = new();
    private readonly Dictionary<(string, string?), long> _meter = [];
    private readonly Lock _meterLock = new();

    // Totals over all lifetimes; senders and the receiver add with Interlocked.
    private long _onewaysSent;
    private long _onewaysAcknowledged;
    private long _onewaysUnacknowledgedAtKill;
    private long _callsAnswered;
    private long _callsFailedByDeath;
    private long _peerCallsReceived;
    private long _regionFull;
    private long _lost;
    private long _damaged;
    private long _bytesSent;
    private int _kills;
    private readonly List<double> _deathNoticedMs = [];

    public async Task<int> RunAsync()
    {
        StartListening();
        string name = $"soak-{Environment.ProcessId}";
        var options = new PageRangeOptions { RegionFullTimeout = TimeSpan.FromSeconds(2) };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Console.WriteLine($"soak: {settings.Duration.TotalSeconds:F0} s, seed {settings.Seed}, {settings.Senders} sender threads, " +
            $"peer lifetimes {settings.MinLife.TotalSeconds:F0}-{settings.MaxLife.TotalSeconds:F0} s, region {options.RegionSize >> 20} MiB");
        Console.WriteLine($"{"time",6} {"peers",5} {"sent",10} {"acked",10} {"rss MiB",8} {"in res KiB",10} {"out res KiB",11} {"pages u:a:f",16} {"fds",5} {"maps",5} {"region maps",11} {"shrunk",8}");

        _clock.Start();
        (int Descriptors, int RegionMappings) baseline = default;
        using var sampling = new CancellationTokenSource();
        Task sampler = SampleLoopAsync(sampling.Token);
        int lifetime = 0;
        while (_clock.Elapsed < settings.Duration)
        {
            await RunLifetimeAsync(listener, name, lifetime++);
            if (lifetime == 1)
            {
                // After one lifetime, everything that lives as long as the process (socket engine, child reaping,
                // thread pool) exists: the baseline for leaks.
                baseline = Descriptors();
            }
        }
        await sampling.CancelAsync();
        await sampler;
        PrintSample();
        (int Descriptors, int RegionMappings) final = Descriptors();
        return PrintSummary(baseline, final);
    }

    private async Task RunLifetimeAsync(PageRangeListener listener, string name, int lifetime)
    {
        using Process peer = StartPeer(name, settings.Seed + lifetime);
        PageRangeConnection connection;
        try
        {
            connection = await listener.AcceptAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch
        {
            peer.Kill();
            throw;
        }
        await using (connection)
        {
            using var stop = new CancellationTokenSource();
            var threads = new List<Thread>();
            var acked = new uint[settings.Senders];
            var sent = new uint[settings.Senders];
            for (int t = 0; t < settings.Senders; t++)
            {
                int stream = t;
                int seed = _random.Next();
                threads.Add(new Thread(() => SendLoop(connection, stream, seed, sent, acked)) { Name = $"soak sender {t}" });
            }
            threads.Add(new Thread(() => ReceiveLoop(connection)) { Name = "soak receiver" });
            foreach (Thread thread in threads)
            {
                thread.Start();
            }

            TimeSpan life = settings.MinLife + ((settings.MaxLife - settings.MinLife) * _random.NextDouble());
            TimeSpan left = settings.Duration - _clock.Elapsed;
            await Task.Delay(life < left ? life : left > TimeSpan.Zero ? left : TimeSpan.Zero);

            peer.Kill();
            var sinceKill = Stopwatch.StartNew();
            foreach (Thread thread in threads)
            {
                if (!thread.Join(TimeSpan.FromSeconds(30)))
                {
                    throw new TimeoutException($"A soak thread ({thread.Name}) still runs 30 s after the peer was killed.");
                }
            }
            lock (_deathNoticedMs)
            {
                _deathNoticedMs.Add(sinceKill.Elapsed.TotalMilliseconds);
            }
            _kills++;
            await peer.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            for (int t = 0; t < settings.Senders; t++)
            {
                _onewaysAcknowledged += acked[t];
                _onewaysUnacknowledgedAtKill += sent[t] - acked[t];
            }
        }
    }

    /// <summary>A sender thread: random oneways and calls; a call's reply acknowledges this thread's oneways so far.</summary>
    private void SendLoop(PageRangeConnection connection, int stream, int seed, uint[] sent, uint[] acked)
    {
        var random = new Random(seed);
        byte[] buffer = new byte[1 << 20];
        uint oneway = 0;
        uint call = 0;
        ulong lastGaps = 0;
        ulong lastBad = 0;
        // Each lifetime picks its own mix: from almost all oneways to almost all calls.
        int onewayPercent = random.Next(10, 95);
        try
        {
            while (true)
            {
                int length = SoakPayload.NextSize(random, buffer.Length);
                Span<byte> payload = buffer.AsSpan(0, length);
                try
                {
                    if (random.Next(100) < onewayPercent)
                    {
                        SoakPayload.Fill(payload, (uint)stream, oneway + 1);
                        connection.SendOneway(1, payload);
                        sent[stream] = ++oneway;
                        Interlocked.Increment(ref _onewaysSent);
                    }
                    else
                    {
                        SoakPayload.Fill(payload, (uint)(SoakPeer.MaxStreams + stream), ++call);
                        using Transaction reply = connection.Call(1, payload);
                        ReadOnlySpan<byte> ack = reply.Payload;
                        if (ack.Length != SoakPeer.AckLength)
                        {
                            Interlocked.Increment(ref _damaged);
                            continue;
                        }
                        acked[stream] = Math.Max(acked[stream], BinaryPrimitives.ReadUInt32LittleEndian(ack));
                        // The peer's counts are cumulative for this connection: add what is new since the last reply.
                        ulong gaps = BinaryPrimitives.ReadUInt64LittleEndian(ack[16..]);
                        ulong bad = BinaryPrimitives.ReadUInt64LittleEndian(ack[24..]);
                        Interlocked.Add(ref _lost, (long)(gaps - Math.Min(gaps, lastGaps)));
                        Interlocked.Add(ref _damaged, (long)(bad - Math.Min(bad, lastBad)));
                        lastGaps = Math.Max(lastGaps, gaps);
                        lastBad = Math.Max(lastBad, bad);
                        Interlocked.Increment(ref _callsAnswered);
                    }
                    Interlocked.Add(ref _bytesSent, length);
                }
                catch (RegionFullException)
                {
                    // The peer is slow (or the oneway quota is taken by big messages): nothing was sent; go on.
                    Interlocked.Increment(ref _regionFull);
                }
            }
        }
        catch (PeerDiedException)
        {
            // Killed: a call in flight fails, oneways published but not yet acknowledged may be gone with the peer.
            Interlocked.Increment(ref _callsFailedByDeath);
        }
    }

    /// <summary>Answers the peer's calls, checking each message.</summary>
    private void ReceiveLoop(PageRangeConnection connection)
    {
        byte[] echo = new byte[4];
        try
        {
            while (true)
            {
                using Transaction transaction = connection.Receive();
                if (!SoakPayload.TryVerify(transaction.Payload, out _, out uint n))
                {
                    Interlocked.Increment(ref _damaged);
                }
                Interlocked.Increment(ref _peerCallsReceived);
                if (transaction.IsTwoWay)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(echo, n);
                    transaction.Reply(echo);
                }
            }
        }
        catch (PeerDiedException)
        {
            // Killed.
        }
        catch (RegionFullException)
        {
            // The dying peer stopped freeing; its death ends the loop on the next receive anyway.
            Interlocked.Increment(ref _regionFull);
        }
    }

    private static Process StartPeer(string name, int seed)
    {
        // Under the app host the process path is the benchmark itself; under `dotnet X.dll` it is dotnet.
        string processPath = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(processPath) { UseShellExecute = false };
        // The soak kills its peers with SIGKILL: without a diagnostic server, each leaves no runtime IPC socket and
        // debugger pipes behind in the temp directory (removed only on a clean exit).
        start.Environment["DOTNET_EnableDiagnostics"] = "0";
        if (Path.GetFileNameWithoutExtension(processPath) == "dotnet")
        {
            start.ArgumentList.Add(typeof(SoakCommand).Assembly.Location);
        }
        foreach (string argument in (string[])["soak", "--peer", name, seed.ToString(CultureInfo.InvariantCulture)])
        {
            start.ArgumentList.Add(argument);
        }
        return Process.Start(start) ?? throw new InvalidOperationException("The soak peer could not be started.");
    }

    private void StartListening()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == PageRangeMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? tag = tags.Length > 0 ? tags[0].Value as string : null;
            lock (_meterLock)
            {
                (string, string?) key = (instrument.Name, tag);
                _meter[key] = instrument.IsObservable ? value : _meter.GetValueOrDefault(key) + value;
            }
        });
        _listener.Start();
    }

    private long Meter(string instrument, string? tag = null)
    {
        lock (_meterLock)
        {
            return _meter.GetValueOrDefault((instrument, tag));
        }
    }

    private async Task SampleLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(settings.Sample);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                PrintSample();
            }
        }
        catch (OperationCanceledException)
        {
            // The soak is over.
        }
    }

    private void PrintSample()
    {
        // Idle pages go back to the kernel, as a memory-pressure monitor would do: resident memory follows the traffic.
        Shrinker.Shared.ScanIdle(TimeSpan.FromSeconds(1));
        _listener.RecordObservableInstruments();
        (int descriptors, int regionMappings) = Descriptors();
        long sentTotal = Meter("pagerange.transaction.sent", "oneway") + Meter("pagerange.transaction.sent", "call") + Meter("pagerange.transaction.sent", "reply");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{_clock.Elapsed.TotalSeconds,5:F0}s {_kills,5} {sentTotal,10} {_onewaysAcknowledged + _callsAnswered,10} {Environment.WorkingSet / (1 << 20),8} " +
            $"{Meter("pagerange.region.resident", "inbound") / 1024,10} {Meter("pagerange.region.resident", "outbound") / 1024,11} " +
            $"{$"{Meter("pagerange.region.pages", "used")}:{Meter("pagerange.region.pages", "available")}:{Meter("pagerange.region.pages", "free")}",16} " +
            $"{descriptors,5} {File.ReadLines("/proc/self/maps").Count(),5} {regionMappings,11} {Meter("pagerange.shrinker.pages.freed"),8}"));
    }

    private int PrintSummary((int Descriptors, int RegionMappings) baseline, (int Descriptors, int RegionMappings) final)
    {
        _listener.RecordObservableInstruments();
        double[] death = [.. _deathNoticedMs.Order()];
        long violations = Meter("pagerange.protocol.violations");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ran {_clock.Elapsed.TotalSeconds:F0} s, {_kills} peers killed with SIGKILL and restarted"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sent by us: {_onewaysSent} oneways published, {_callsAnswered + _callsFailedByDeath} calls made ({_bytesSent / (1 << 20)} MiB); gave up on a full region {_regionFull} times"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"acknowledged by the peer: {_onewaysAcknowledged} oneways, {_callsAnswered} calls answered; at the kills {_onewaysUnacknowledgedAtKill} oneways were unacknowledged " +
            $"and {_callsFailedByDeath} calls failed with PeerDiedException (not counted as lost)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"received from the peer: {_peerCallsReceived} calls"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"lost among acknowledged: {_lost}, damaged: {_damaged}, protocol violations: {violations}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"meter: sent oneway {Meter("pagerange.transaction.sent", "oneway")}, call {Meter("pagerange.transaction.sent", "call")}, reply {Meter("pagerange.transaction.sent", "reply")}, " +
            $"error reply {Meter("pagerange.transaction.sent", "error_reply")}; received oneway {Meter("pagerange.transaction.received", "oneway")}, call {Meter("pagerange.transaction.received", "call")}, " +
            $"reply {Meter("pagerange.transaction.received", "reply")}; frees {Meter("pagerange.buffer.freed")}; region-full waits {Meter("pagerange.region.full.waits")}, failures {Meter("pagerange.region.full.failures")}"));
        if (death.Length > 0)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"death noticed by every thread after the kill: median {death[death.Length / 2]:F0} ms, max {death[^1]:F0} ms"));
        }
        Console.WriteLine($"descriptors after the first lifetime {baseline.Descriptors}, at the end {final.Descriptors}; region mappings {baseline.RegionMappings} -> {final.RegionMappings}");
        bool ok = _lost == 0 && _damaged == 0 && violations == 0 && final.Descriptors == baseline.Descriptors && final.RegionMappings == 0;
        Console.WriteLine(ok ? "PASS" : "FAIL");
        return ok ? 0 : 1;
    }

    /// <summary>Open descriptors (not counting assemblies the runtime maps lazily, also ones rebuilt on disk meanwhile,
    /// which read "x.dll (deleted)") and mappings of PageRange regions.</summary>
    private static (int Descriptors, int RegionMappings) Descriptors()
    {
        int descriptors = Directory.EnumerateFileSystemEntries("/proc/self/fd")
            .Count(fd => new FileInfo(fd).LinkTarget?.Contains(".dll", StringComparison.Ordinal) != true);
        int regionMappings = File.ReadLines("/proc/self/maps").Count(line => line.Contains("/memfd:pagerange:", StringComparison.Ordinal));
        return (descriptors, regionMappings);
    }
}
