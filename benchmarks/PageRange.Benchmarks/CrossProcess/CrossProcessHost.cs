using HdrHistogram;
using System.Diagnostics;
using System.Globalization;
using System.Runtime;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The measuring process: sets up every transport, starts the peer, runs each workload over every transport in
/// interleaved rounds (A, B, C, A, B, C, ... with the order rotated each round), and hands the sums to the report.
/// </summary>
internal sealed class CrossProcessHost : IDisposable
{
    private readonly CrossProcessOptions _options;
    /// <summary>
    /// Each transport's slice in a settle round: thousands of messages, well past the 30 calls that promote a method,
    /// and short beside the pause that follows.
    /// </summary>
    private static readonly TimeSpan s_settleSlice = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// The pause after each settle round, with both processes idle: longer than the runtime's call-counting delay
    /// (100 ms after the last tier-0 compilation), so its timer fires and the background compiler runs with the cores free.
    /// </summary>
    private static readonly TimeSpan s_settlePause = TimeSpan.FromMilliseconds(150);

    /// <summary>Compiler-thread CPU in a round below which that round counts as quiet (the thread's own wake-ups).</summary>
    private static readonly TimeSpan s_quietCompilerCpu = TimeSpan.FromMilliseconds(1);

    private readonly List<IHostTransport> _transports = [];
    private readonly List<JitSettle> _settles = [];
    private PeerProcess? _peer;

    public CrossProcessHost(CrossProcessOptions options) => _options = options;

    public IReadOnlyList<IHostTransport> Transports => _transports;

    /// <summary>How the JIT settled before each workload and size measured so far (none when settling is off).</summary>
    public IReadOnlyList<JitSettle> Settles => _settles;

    public PeerProcess Peer => _peer ?? throw new InvalidOperationException("The peer is not started.");

    /// <summary>Creates the listening ends, starts the peer and waits until every transport is connected.</summary>
    /// <param name="transports">The transports to connect.</param>
    /// <param name="withFloor">Adds the floor when it is not listed: every measuring run reads its numbers against it.</param>
    public async Task ConnectAsync(IReadOnlyList<string> transports, bool withFloor = true)
    {
        if (withFloor && !transports.Contains("floor"))
        {
            transports = ["floor", .. transports];
        }
        string runId = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var pending = transports.Select((transport, index) => TransportSetup.CreateHost(transport, runId, index, _options.RegionSize)).ToList();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        List<Task<IHostTransport>> accepts = pending.Select(p => p.AcceptAsync(timeout.Token)).ToList();
        string? stateDirectory = _options.DumpState ? _options.ResolveOutputDirectory() : null;
        _peer = PeerProcess.Start(_options.RegionSize, pending.Select(p => p.PeerSpec), _options.PinPeerToCpu, _options.ReplyDelay, stateDirectory);
        foreach (TransportSetup.Pending p in pending)
        {
            p.AfterPeerStarted();
        }
        Task connected = Task.WhenAll(Task.WhenAll(accepts), _peer.WaitConnectedAsync(timeout.Token));
        Task exited = _peer.WaitForExitAsync(timeout.Token);
        if (await Task.WhenAny(connected, exited) != connected)
        {
            throw new InvalidOperationException("The peer exited before every transport was connected; see its standard error above.");
        }
        await connected;
        foreach (Task<IHostTransport> accept in accepts)
        {
            _transports.Add(await accept);
        }
    }

    /// <summary>Runs every workload and size the options name; returns one measurement per transport, workload and size.</summary>
    public List<Measurement> RunAll(Action<string> progress)
    {
        var results = new List<Measurement>();
        foreach ((Workload workload, IReadOnlyList<int> sizes) in new[]
        {
            (Workload.PingPong, _options.PingPongSizes), (Workload.Oneway, _options.OnewaySizes), (Workload.OnewayEcho, _options.OnewayEchoSizes),
        })
        {
            foreach (int size in sizes)
            {
                progress($"{workload} {size} B");
                int settlesBefore = _settles.Count;
                results.AddRange(RunInterleaved(workload, new BenchPayload(size)));
                if (_settles.Count > settlesBefore && _settles[^1] is var settle)
                {
                    progress(string.Create(CultureInfo.InvariantCulture,
                        $"  JIT {(settle.Settled ? "settled" : "NOT settled")} after {settle.Rounds} round(s), {settle.Elapsed.TotalSeconds:F1} s, {settle.CompilerCpu.TotalMilliseconds:F0} ms of compiler CPU"));
                }
            }
        }
        return results;
    }

    /// <summary>One workload and size over every transport: a warm-up each, then the rounds, the order rotated each round.</summary>
    public Measurement[] RunInterleaved(Workload workload, BenchPayload payload)
    {
        // The transports that send this size (a struct has one), by their index in _transports.
        int[] carriers = Enumerable.Range(0, _transports.Count).Where(i => _transports[i].Carries(payload.Size)).ToArray();
        var measurements = carriers.Select(i => new Measurement(_transports[i].Transport, _transports[i].Mode, workload, payload.Size)).ToArray();
        foreach (int i in carriers)
        {
            RunSlice(i, workload, payload, _options.Warmup, measurement: null);
        }
        if (_options.JitSettle > TimeSpan.Zero)
        {
            _settles.Add(SettleJit(workload, payload, carriers));
        }
        for (int round = 0; round < _options.Rounds; round++)
        {
            for (int k = 0; k < carriers.Length; k++)
            {
                int j = (k + round) % carriers.Length;
                RunSlice(carriers[j], workload, payload, _options.Slice, measurements[j]);
            }
        }
        return measurements;
    }

    /// <summary>
    /// Runs short unmeasured rounds over every transport, each followed by a pause, until two rounds in a row in which
    /// neither process compiled anything (or <see cref="CrossProcessOptions.JitSettle"/> has passed).
    /// </summary>
    /// <remarks>
    /// The runtime re-compiles hot methods (tier 0, then instrumented, then optimized: tiered PGO) on a background
    /// thread, after a 100 ms timer. Under <c>chrt -f</c> every thread of both processes is SCHED_FIFO at one priority,
    /// and FIFO does not share a core between equals: while the host and the peer busy-spin on the 2 cores, the
    /// compiler thread and the timer get none, so without this the tier-up crept through the measured slices (50-90
    /// ms of compiler CPU in some, 300 methods compiled in the host after the warm-up, 13:08 UTC) and the slices
    /// measured unoptimized code: the typed path, with the more methods, the most (round trip 64 B 1.6-2× raw's, against
    /// 1.5× with the tier-up off). The pauses give the compiler the cores; a round is quiet when the host compiled no
    /// method (<see cref="JitInfo.GetCompiledMethodCount"/>) and the compiler threads of both processes used under a
    /// millisecond (a peer's first compilation of a method runs on its serving thread, which the next rounds' tier-up
    /// then shows).
    /// </remarks>
    private JitSettle SettleJit(Workload workload, BenchPayload payload, int[] carriers)
    {
        long start = Stopwatch.GetTimestamp();
        int rounds = 0;
        int quiet = 0;
        TimeSpan compilerCpu = TimeSpan.Zero;
        while (quiet < 2 && Stopwatch.GetElapsedTime(start) < _options.JitSettle)
        {
            long methods = JitInfo.GetCompiledMethodCount();
            var compiler = CompilerThreadsCpu.Start(Environment.ProcessId, Peer.Id);
            foreach (int i in carriers)
            {
                RunSlice(i, workload, payload, s_settleSlice, measurement: null);
            }
            Thread.Sleep(s_settlePause);
            TimeSpan used = compiler.Elapsed();
            compilerCpu += used;
            rounds++;
            quiet = JitInfo.GetCompiledMethodCount() == methods && used < s_quietCompilerCpu ? quiet + 1 : 0;
        }
        return new JitSettle(workload, payload.Size, rounds, Stopwatch.GetElapsedTime(start), compilerCpu, Settled: quiet >= 2);
    }

    /// <summary>One serve session of the peer: the workload for <paramref name="duration"/>, then a stop that checks every message arrived intact.</summary>
    public void RunSlice(int index, Workload workload, BenchPayload payload, TimeSpan duration, Measurement? measurement)
    {
        IHostTransport transport = _transports[index];
        Peer.Serve(index);
        long messages = 0;
        // A few unrecorded round trips wake the peer's thread and warm this transport's cache lines after the switch.
        const int PreRoll = 16;
        bool roundTrips = workload.IsRoundTrip();
        bool echo = workload == Workload.OnewayEcho;
        if (roundTrips)
        {
            for (int i = 0; i < PreRoll; i++)
            {
                Verify(echo ? transport.OnewayRoundTrip(payload) : transport.RoundTrip(payload), payload, transport);
            }
        }
        // The slice's own round trips (ping-pong, oneway echo), added to the measurement's after the slice's clock and CPU are read:
        // its p50 is the slice's, for the slice-by-slice comparison with the floor (the vCPUs' placement changes between
        // slices on these VMs). Cleared before the clock starts, and used in warm-up slices too, so that the JIT compiles
        // this code before the measured rounds.
        _slice.Reset();
        TimeSpan cpuBefore = CpuTime();
        var compiler = CompilerThreadsCpu.Start(Environment.ProcessId, Peer.Id);
        long start = Stopwatch.GetTimestamp();
        long deadline = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        if (roundTrips)
        {
            long now;
            do
            {
                long before = Stopwatch.GetTimestamp();
                ulong checksum = echo ? transport.OnewayRoundTrip(payload) : transport.RoundTrip(payload);
                now = Stopwatch.GetTimestamp();
                _slice.RecordValue(ToNanoseconds(now - before));
                Verify(checksum, payload, transport);
                messages++;
            }
            while (now < deadline);
        }
        else
        {
            // Check the clock once per batch of about 1 MiB, so reading it costs nothing next to 64 B messages.
            int batch = Math.Clamp((1 << 20) / Math.Max(payload.Size, 1), 1, 256);
            while (Stopwatch.GetTimestamp() < deadline)
            {
                transport.SendOneways(payload, batch);
                messages += batch;
            }
        }
        StopReport report = transport.Stop();
        long end = Stopwatch.GetTimestamp();
        // Without the JIT's tier-up, which belongs to the run's start, not to this slice's messages.
        TimeSpan cpu = CpuTime() - cpuBefore - compiler.Elapsed();
        long expected = roundTrips ? messages + PreRoll : messages;
        if (report.Messages != expected || report.Bytes != expected * payload.Size
            || (workload == Workload.Oneway && report.Checksum != unchecked(payload.Checksum * (ulong)messages)))
        {
            throw new InvalidOperationException(
                $"{transport.Transport} ({transport.Mode}): the peer saw {report.Messages} messages and {report.Bytes} bytes of {expected}, or a wrong checksum.");
        }
        measurement?.Add(messages, Stopwatch.GetElapsedTime(start, end), cpu);
        if (workload == Workload.Oneway)
        {
            measurement?.SliceRates.Add(messages / Stopwatch.GetElapsedTime(start, end).TotalSeconds);
        }
        if (roundTrips)
        {
            LongHistogram whole = measurement?.Histogram ?? _warmup;
            whole.Add(_slice);
            double median = _slice.GetValueAtPercentile(50);
            if (measurement is null)
            {
                _warmup.Reset();
                return;
            }
            measurement.SliceMedians.Add(median);
            if (_slice.TotalCount != messages || whole.TotalCount != measurement.Messages)
            {
                throw new InvalidOperationException(
                    $"{transport.Transport} ({transport.Mode}): {_slice.TotalCount} round trips recorded in the slice of {messages}, {whole.TotalCount} in all of {measurement.Messages}.");
            }
        }
    }

    // One slice's round trips (ping-pong, oneway echo), reset before each slice: as the measurements' histograms, up to 10 s.
    private readonly LongHistogram _slice = new(10_000_000_000L, 3);

    // Where an unmeasured slice's round trips go (warm-up, JIT settling), through the same calls as a measured one's.
    private readonly LongHistogram _warmup = new(10_000_000_000L, 3);

    /// <summary>CPU time of both processes so far, to the nanosecond (<see cref="ProcessCpuClock"/>).</summary>
    public TimeSpan CpuTime() => ProcessCpuClock.Of(Environment.ProcessId) + Peer.CpuTime;

    private static void Verify(ulong checksum, BenchPayload payload, IHostTransport transport)
    {
        if (checksum != payload.Checksum)
        {
            throw new InvalidOperationException($"{transport.Transport} ({transport.Mode}): the echo of a {payload.Size}-byte ping differs from what was sent.");
        }
    }

    private static long ToNanoseconds(long ticks) => (long)(ticks * (1e9 / Stopwatch.Frequency));

    public void Dispose()
    {
        if (_options.DumpState)
        {
            // Before the peer quits: its end is still connected, so the state shows the run's end, not a close.
            string directory = _options.ResolveOutputDirectory();
            foreach (PageRangeHostTransport transport in _transports.OfType<PageRangeHostTransport>())
            {
                File.WriteAllText(CrossProcessOptions.StateFile(directory, transport.Transport, transport.Mode, "host"), transport.Connection.DumpState());
            }
        }
        // The peer writes its own on quit (PageRangePeerTransport.Dispose).
        _peer?.Quit();
        foreach (IHostTransport transport in _transports)
        {
            transport.Dispose();
        }
        _peer?.Dispose();
    }
}

/// <summary>How the JIT settled before one workload and size: rounds run, time taken, compiler CPU of both processes, whether it went quiet.</summary>
internal sealed record JitSettle(Workload Workload, int Size, int Rounds, TimeSpan Elapsed, TimeSpan CompilerCpu, bool Settled);
