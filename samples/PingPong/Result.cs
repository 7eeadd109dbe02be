using System.Diagnostics;
using System.Globalization;
using HdrHistogram;

namespace PingPong;

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

    /// <summary>
    /// "ratio: sync Call / sync Unix socket p50 0.031 p99 0.048 (PageRange 32.3x faster at p50)": PageRange's round
    /// trip over the socket's, measured in the same run between the same two processes.
    /// </summary>
    public static string Ratio(Result pageRange, Result socket)
    {
        double p50 = pageRange.P50Us / socket.P50Us;
        double p99 = pageRange.P99Us / socket.P99Us;
        string verdict = p50 <= 1
            ? string.Create(CultureInfo.InvariantCulture, $"PageRange {1 / p50:F1}x faster at p50")
            : string.Create(CultureInfo.InvariantCulture, $"PageRange {p50:F1}x slower at p50");
        return string.Create(CultureInfo.InvariantCulture, $"ratio: {pageRange.Phase} / {socket.Phase} p50 {p50:F3} p99 {p99:F3} ({verdict})");
    }

    private static string Micros(double value) =>
        double.IsNaN(value) ? "" : string.Create(CultureInfo.InvariantCulture, $"{value:F2} µs");
}
