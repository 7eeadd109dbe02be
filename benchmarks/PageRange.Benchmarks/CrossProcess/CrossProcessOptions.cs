using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The command line of <c>cross-process</c> (System.CommandLine): its options, their defaults and their checks.</summary>
internal sealed class CrossProcessOptions
{
    public const string CommandName = "cross-process";

    private static readonly Option<bool> s_quick = new("--quick")
    {
        Description = "A short run for CI: 1 round, 150 ms slices, 60 ms warm-up, at most 3 s of JIT settling, ping-pong 64 B and 16 KiB, oneway 64 B and 64 KiB; explicit options still win.",
    };

    private static readonly Option<int> s_rounds = OptionRules.Positive(new Option<int>("--rounds")
    {
        Description = "Interleaved rounds over every transport and size.",
        DefaultValueFactory = _ => 3,
    });

    private static readonly Option<int> s_sliceMs = OptionRules.Positive(new Option<int>("--slice-ms")
    {
        Description = "Milliseconds each transport and size is measured per round.",
        DefaultValueFactory = _ => 400,
    });

    private static readonly Option<int> s_warmupMs = OptionRules.NotNegative(new Option<int>("--warmup-ms")
    {
        Description = "Milliseconds of warm-up before each measurement.",
        DefaultValueFactory = _ => 200,
    });

    private static readonly Option<int> s_jitSettleMs = OptionRules.NotNegative(new Option<int>("--jit-settle-ms")
    {
        Description = "At most this many milliseconds per workload and size, after the warm-up, of short unmeasured rounds with pauses until neither process's JIT compiles anything (under chrt -f the tier-up gets no CPU while both sides spin); 0 skips.",
        DefaultValueFactory = _ => 10_000,
    });

    private static readonly Option<string[]> s_transports = new("--transports")
    {
        Description = $"A comma list of transports; a name without ':mode' takes every mode. Known: {string.Join(", ", TransportSetup.All)}.",
        CustomParser = ParseTransports,
        HelpName = "a,b,...",
    };

    private static readonly Option<int[]> s_pingPongSizes = OptionRules.Sizes(new Option<int[]>("--pingpong-sizes")
    {
        Description = "Message sizes of the round trips, in bytes; none skips them.",
        HelpName = "64,1024,...|none",
    });

    private static readonly Option<int[]> s_onewaySizes = OptionRules.Sizes(new Option<int[]>("--oneway-sizes")
    {
        Description = "Message sizes of the oneway streams, in bytes; none skips them.",
        HelpName = "64,4096,...|none",
    });

    private static readonly Option<int[]> s_onewayEchoSizes = OptionRules.Sizes(new Option<int[]>("--oneway-echo-sizes")
    {
        Description = "Message sizes of the oneway echoes (a oneway out, the peer's oneway echo back, timed as a round trip: the latency of a oneway sent now and then), in bytes; none skips them.",
        HelpName = "64,...|none",
    });

    private static readonly Option<long> s_regionSize = new("--region-size")
    {
        Description = "Bytes of each PageRange region: a page multiple from 64 KiB to 1 GiB.",
        DefaultValueFactory = _ => 8L << 20,
        CustomParser = ParseRegionSize,
        HelpName = "bytes",
    };

    private static readonly Option<int?> s_pinPeer = new("--pin-peer")
    {
        Description = "Start the peer under 'taskset -c CPU'; run the host under taskset on another core.",
        CustomParser = ParseCpu,
        HelpName = "cpu",
    };

    private static readonly Option<int> s_replyDelayUs = OptionRules.NotNegative(new Option<int>("--reply-delay-us")
    {
        Description = "A slow peer: microseconds the peer waits before each ping-pong reply (1000 and up: Thread.Sleep, below: a spin). 0 by default.",
        DefaultValueFactory = _ => 0,
        HelpName = "us",
    });

    private static readonly Option<string> s_out = new("--out")
    {
        Description = "Where results.md, results.csv and the charts go (default: benchmarks/results, or benchmarks/results/quick with --quick).",
        HelpName = "dir",
    };

    private static readonly Option<bool> s_noCharts = new("--no-charts")
    {
        Description = "Write no charts.",
    };

    private static readonly Option<bool> s_dumpState = new("--dump-state")
    {
        Description = "At the end, write each PageRange connection's state as both processes see it (rings, packs, allocator, " +
            "counters over the whole run) to state-<transport>-<mode>-host.txt and -peer.txt beside results.md.",
    };

    public bool Quick { get; private init; }

    public int Rounds { get; private init; } = 3;

    public TimeSpan Slice { get; private init; } = TimeSpan.FromMilliseconds(400);

    public TimeSpan Warmup { get; private init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// How long, at most, <see cref="CrossProcessHost"/> lets the JIT settle after each warm-up (short rounds, then a
    /// pause, until a round in which neither process compiled anything); zero skips it.
    /// </summary>
    public TimeSpan JitSettle { get; private init; } = TimeSpan.FromSeconds(10);

    public IReadOnlyList<string> Transports { get; private init; } = TransportSetup.All;

    public IReadOnlyList<int> PingPongSizes { get; private init; } = [64, 1024, 16 << 10, 256 << 10, 1 << 20];

    public IReadOnlyList<int> OnewaySizes { get; private init; } = [64, 4 << 10, 64 << 10, 1 << 20];

    /// <summary>The oneway echoes: 64 B, the size that a oneway stream packs (also with <c>--quick</c>).</summary>
    public IReadOnlyList<int> OnewayEchoSizes { get; private init; } = [64];

    /// <summary>Each PageRange region: 8 MiB, so a 1 MiB oneway stream has several messages in flight (the quota is half).</summary>
    public long RegionSize { get; private init; } = 8L << 20;

    public string? OutputDirectory { get; private init; }

    /// <summary>
    /// Starts the peer under <c>taskset -c CPU</c>. Run the host under <c>taskset -c</c> another core, and each process
    /// keeps a core of its own: what busy-spinning assumes.
    /// </summary>
    public int? PinPeerToCpu { get; private init; }

    public bool Charts { get; private init; } = true;

    /// <summary>Write each PageRange connection's <c>DumpState</c> from both processes at the end (see <see cref="StateFile"/>).</summary>
    public bool DumpState { get; private init; }

    /// <summary>
    /// The file a PageRange connection's state goes to in <paramref name="directory"/>: <c>state-KIND-MODE-SIDE.txt</c>
    /// (<paramref name="side"/> is <c>host</c> or <c>peer</c>).
    /// </summary>
    public static string StateFile(string directory, string kind, string mode, string side) =>
        Path.Combine(directory, $"state-{kind}-{mode}-{side}.txt");

    /// <summary>How long the peer waits before each ping-pong reply: a slow peer, to see what each wait strategy costs then.</summary>
    public TimeSpan ReplyDelay { get; private init; }

    /// <summary>The <c>cross-process</c> command; <paramref name="run"/> runs with the checked options.</summary>
    public static Command CreateCommand(Func<CrossProcessOptions, Task<int>> run)
    {
        var command = new Command(CommandName,
            "Ping-pong, oneway streams and oneway echoes between two processes over PageRange and the usual .NET transports (Unix socket, " +
            "pipes, TCP), interleaved in one run; writes results.md, results.csv and the charts.")
        {
            s_quick, s_rounds, s_sliceMs, s_warmupMs, s_jitSettleMs, s_transports, s_pingPongSizes, s_onewaySizes, s_onewayEchoSizes, s_regionSize, s_pinPeer, s_replyDelayUs, s_out, s_noCharts, s_dumpState,
        };
        command.SetAction((parse, _) => run(Bind(parse)));
        return command;
    }

    /// <summary>Parses the options of <c>cross-process</c> (without the command's name).</summary>
    /// <exception cref="ArgumentException">An option is unknown or its value breaks its rule.</exception>
    public static CrossProcessOptions Parse(string[] args)
    {
        Command command = CreateCommand(_ => Task.FromResult(0));
        ParseResult parse = command.Parse(args);
        if (parse.Errors.Count > 0)
        {
            throw new ArgumentException(parse.Errors[0].Message);
        }
        return Bind(parse);
    }

    private static CrossProcessOptions Bind(ParseResult parse)
    {
        bool quick = parse.GetValue(s_quick);
        // --quick changes the defaults; an option given explicitly still wins.
        T Pick<T>(Option<T> option, T quickValue) => quick && !parse.IsGiven(option) ? quickValue : parse.GetValue(option)!;
        var defaults = new CrossProcessOptions();
        return new CrossProcessOptions
        {
            Quick = quick,
            Rounds = Pick(s_rounds, 1),
            Slice = TimeSpan.FromMilliseconds(Pick(s_sliceMs, 150)),
            Warmup = TimeSpan.FromMilliseconds(Pick(s_warmupMs, 60)),
            JitSettle = TimeSpan.FromMilliseconds(Pick(s_jitSettleMs, 3_000)),
            Transports = parse.IsGiven(s_transports) ? parse.GetValue(s_transports)! : defaults.Transports,
            PingPongSizes = parse.IsGiven(s_pingPongSizes) ? parse.GetValue(s_pingPongSizes)! : quick ? [64, 16 << 10] : defaults.PingPongSizes,
            OnewaySizes = parse.IsGiven(s_onewaySizes) ? parse.GetValue(s_onewaySizes)! : quick ? [64, 64 << 10] : defaults.OnewaySizes,
            OnewayEchoSizes = parse.IsGiven(s_onewayEchoSizes) ? parse.GetValue(s_onewayEchoSizes)! : defaults.OnewayEchoSizes,
            RegionSize = parse.GetValue(s_regionSize),
            PinPeerToCpu = parse.GetValue(s_pinPeer),
            OutputDirectory = parse.GetValue(s_out),
            Charts = !parse.GetValue(s_noCharts),
            DumpState = parse.GetValue(s_dumpState),
            ReplyDelay = TimeSpan.FromMicroseconds(parse.GetValue(s_replyDelayUs)),
        };
    }

    private static string[] ParseTransports(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        var chosen = new List<string>();
        foreach (string name in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] matches = TransportSetup.All.Where(known => known == name || known.StartsWith(name + ":", StringComparison.Ordinal)).ToArray();
            if (matches.Length == 0)
            {
                result.AddError($"--transports: '{name}' is not a transport; known: {string.Join(", ", TransportSetup.All)}");
                return [];
            }
            chosen.AddRange(matches.Except(chosen));
        }
        if (chosen.Count == 0)
        {
            result.AddError("--transports takes a comma list of at least one transport");
        }
        return [.. chosen];
    }

    private static long ParseRegionSize(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long size)
            && size >= PageRangeOptions.MinRegionSize && size <= PageRangeOptions.MaxRegionSize && size % Environment.SystemPageSize == 0)
        {
            return size;
        }
        result.AddError($"--region-size takes bytes from {PageRangeOptions.MinRegionSize} to {PageRangeOptions.MaxRegionSize}, a multiple of the page size {Environment.SystemPageSize}, not '{text}'");
        return 0;
    }

    private static int? ParseCpu(ArgumentResult result)
    {
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int cpu) && cpu >= 0 && cpu < Environment.ProcessorCount)
        {
            return cpu;
        }
        result.AddError($"--pin-peer takes a CPU number from 0 to {Environment.ProcessorCount - 1}, not '{text}'");
        return null;
    }

    /// <summary>Where results go: <c>--out</c>, else <c>benchmarks/results</c> (<c>benchmarks/results/quick</c> for <c>--quick</c>) of the repository.</summary>
    public string ResolveOutputDirectory()
    {
        if (OutputDirectory is { } explicitDirectory)
        {
            return Path.GetFullPath(explicitDirectory);
        }
        string results = Path.Combine(RepositoryRoot(), "benchmarks", "results");
        return Quick ? Path.Combine(results, "quick") : results;
    }

    /// <summary>The folder holding PageRange.sln above the executable, or the working directory.</summary>
    public static string RepositoryRoot()
    {
        for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "PageRange.sln")))
            {
                return directory.FullName;
            }
        }
        return Directory.GetCurrentDirectory();
    }
}
