using System.Diagnostics;
using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The peer's wait before each ping-pong reply (<c>--reply-delay-us</c>, passed in the environment): a slow peer, so a
/// run shows what each wait strategy costs in CPU when the answer takes a millisecond rather than a microsecond.
/// </summary>
internal static class ReplyDelay
{
    /// <summary>The variable the host sets for the peer: microseconds, 0 or absent for none.</summary>
    public const string EnvironmentVariable = "PAGERANGE_BENCH_REPLY_DELAY_US";

    private static readonly long s_microseconds = Read();

    /// <summary>Waits the configured delay: a sleep from a millisecond up (as a slow handler would block), a spin below.</summary>
    public static void Apply()
    {
        if (s_microseconds <= 0)
        {
            return;
        }
        if (s_microseconds >= 1000)
        {
            Thread.Sleep(TimeSpan.FromMicroseconds(s_microseconds));
            return;
        }
        long end = Stopwatch.GetTimestamp() + (long)(s_microseconds * (Stopwatch.Frequency / 1e6));
        while (Stopwatch.GetTimestamp() < end)
        {
            Thread.SpinWait(16);
        }
    }

    private static long Read() =>
        long.TryParse(Environment.GetEnvironmentVariable(EnvironmentVariable), NumberStyles.Integer, CultureInfo.InvariantCulture, out long value)
            ? value
            : 0;
}
