using HdrHistogram;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>The three workloads.</summary>
internal enum Workload
{
    /// <summary>A round trip: request out, the same bytes echoed back.</summary>
    PingPong,

    /// <summary>Oneway messages as fast as the receiver takes them.</summary>
    Oneway,

    /// <summary>
    /// A round trip made of two oneway messages: one out, and the peer's echo of it back, each sent as a oneway (over
    /// PageRange, a small one lands in the open pack of its direction while the other side waits for it). The latency
    /// of a oneway sent now and then, which the stream's throughput does not show.
    /// </summary>
    OnewayEcho,
}

/// <summary>What the report and the CSV need to know of a workload.</summary>
internal static class WorkloadExtensions
{
    /// <summary>Whether each message is a timed round trip (a histogram of latencies) rather than a rate.</summary>
    public static bool IsRoundTrip(this Workload workload) => workload is Workload.PingPong or Workload.OnewayEcho;

    /// <summary>The workload's name in results.csv.</summary>
    public static string CsvName(this Workload workload) => workload switch
    {
        Workload.PingPong => "pingpong",
        Workload.Oneway => "oneway",
        Workload.OnewayEcho => "oneway-echo",
        _ => throw new ArgumentOutOfRangeException(nameof(workload), workload, null),
    };
}

/// <summary>Everything measured for one transport, workload and size, summed over the interleaved rounds.</summary>
internal sealed class Measurement(string transport, string mode, Workload workload, int size)
{
    public string Transport => transport;

    public string Mode => mode;

    public string Label => mode == "blocking" ? transport : $"{transport} ({mode})";

    public Workload Workload => workload;

    public int Size => size;

    /// <summary>Round-trip times in nanoseconds (round-trip workloads only); up to 10 s, 3 significant digits.</summary>
    public LongHistogram? Histogram { get; } = workload.IsRoundTrip() ? new LongHistogram(10_000_000_000L, 3) : null;

    /// <summary>
    /// The p50 round trip of each measured slice, in the order they ran (round-trip workloads only): slice i of every transport ran
    /// in round i, so a transport's slices can be read against the floor's of the same rounds.
    /// </summary>
    public List<double> SliceMedians { get; } = [];

    /// <summary>
    /// The messages per second of each measured slice, in the order they ran (oneway streams only), to be read against the
    /// floor's slices of the same rounds as <see cref="SliceMedians"/> are.
    /// </summary>
    public List<double> SliceRates { get; } = [];

    public long Messages { get; private set; }

    public TimeSpan Elapsed { get; private set; }

    /// <summary>CPU time of both processes over the measured windows.</summary>
    public TimeSpan Cpu { get; private set; }

    public void Add(long messages, TimeSpan elapsed, TimeSpan cpu)
    {
        Messages += messages;
        Elapsed += elapsed;
        Cpu += cpu;
    }

    public double MessagesPerSecond => Messages / Elapsed.TotalSeconds;

    /// <summary>Payload bytes per second in one direction.</summary>
    public double BytesPerSecond => MessagesPerSecond * size;

    public double CpuNanosecondsPerMessage => Cpu.TotalNanoseconds / Messages;

    public double Percentile(double percentile) => Histogram is { } histogram ? histogram.GetValueAtPercentile(percentile) : double.NaN;

    public double Max => Histogram is { } histogram ? histogram.GetMaxValue() : double.NaN;

    /// <summary>The bare shared-memory ring every run measures: the machine's limit at that moment.</summary>
    public bool IsFloor => transport == "floor";

    public bool IsPageRange => transport.StartsWith("pagerange", StringComparison.Ordinal);
}
