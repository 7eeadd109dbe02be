using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The command line of <c>cross-process</c>.</summary>
internal sealed class CrossProcessOptions
{
    public const string Usage =
        "usage: dotnet run -c Release --project benchmarks/PageRange.Benchmarks -- cross-process [--quick] [--rounds N] [--slice-ms MS] " +
        "[--warmup-ms MS] [--transports a,b,...] [--pingpong-sizes 64,1024,...] [--oneway-sizes 64,4096,...] [--region-size BYTES] [--pin-peer CPU] [--out DIR] [--no-charts]";

    public bool Quick { get; private set; }

    public int Rounds { get; private set; } = 3;

    public TimeSpan Slice { get; private set; } = TimeSpan.FromMilliseconds(400);

    public TimeSpan Warmup { get; private set; } = TimeSpan.FromMilliseconds(200);

    public IReadOnlyList<string> Transports { get; private set; } = TransportSetup.All;

    public IReadOnlyList<int> PingPongSizes { get; private set; } = [64, 1024, 16 << 10, 256 << 10, 1 << 20];

    public IReadOnlyList<int> OnewaySizes { get; private set; } = [64, 4 << 10, 64 << 10, 1 << 20];

    /// <summary>Each PageRange region: 8 MiB, so a 1 MiB oneway stream has several messages in flight (the quota is half).</summary>
    public long RegionSize { get; private set; } = 8L << 20;

    public string? OutputDirectory { get; private set; }

    /// <summary>
    /// Starts the peer under <c>taskset -c CPU</c>. Run the host under <c>taskset -c</c> another core, and each process
    /// keeps a core of its own: what busy-spinning assumes.
    /// </summary>
    public int? PinPeerToCpu { get; private set; }

    public bool Charts { get; private set; } = true;

    public bool Help { get; private set; }

    public static CrossProcessOptions Parse(string[] args)
    {
        var options = new CrossProcessOptions();
        // --quick first, so explicit options after it still win.
        if (args.Contains("--quick"))
        {
            options.Quick = true;
            options.Rounds = 1;
            options.Slice = TimeSpan.FromMilliseconds(150);
            options.Warmup = TimeSpan.FromMilliseconds(60);
            options.PingPongSizes = [64, 16 << 10];
            options.OnewaySizes = [64, 64 << 10];
        }
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--quick":
                    break;
                case "--rounds":
                    options.Rounds = int.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--slice-ms":
                    options.Slice = TimeSpan.FromMilliseconds(int.Parse(Next(), CultureInfo.InvariantCulture));
                    break;
                case "--warmup-ms":
                    options.Warmup = TimeSpan.FromMilliseconds(int.Parse(Next(), CultureInfo.InvariantCulture));
                    break;
                case "--transports":
                    options.Transports = Next().Split(',', StringSplitOptions.RemoveEmptyEntries)
                        .SelectMany(name => TransportSetup.All.Where(known => known == name || known.StartsWith(name + ":", StringComparison.Ordinal)))
                        .Distinct()
                        .ToArray();
                    break;
                case "--pingpong-sizes":
                    options.PingPongSizes = ParseSizes(Next());
                    break;
                case "--oneway-sizes":
                    options.OnewaySizes = ParseSizes(Next());
                    break;
                case "--region-size":
                    options.RegionSize = long.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--pin-peer":
                    options.PinPeerToCpu = int.Parse(Next(), CultureInfo.InvariantCulture);
                    break;
                case "--out":
                    options.OutputDirectory = Next();
                    break;
                case "--no-charts":
                    options.Charts = false;
                    break;
                case "--help" or "-h":
                    options.Help = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'.");
            }
        }
        if (options.Rounds <= 0 || options.Slice <= TimeSpan.Zero || options.Warmup < TimeSpan.Zero || options.Transports.Count == 0)
        {
            throw new ArgumentException("--rounds and --slice-ms must be positive, --warmup-ms not negative, and --transports must name a known transport.");
        }
        return options;
    }

    private static int[] ParseSizes(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(size => int.Parse(size, CultureInfo.InvariantCulture)).ToArray();

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
