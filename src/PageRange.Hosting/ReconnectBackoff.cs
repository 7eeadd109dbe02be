namespace PageRange.Hosting;

/// <summary>The wait before the next attempt to connect: exponential, capped, spread at random.</summary>
internal static class ReconnectBackoff
{
    /// <summary>The wait after <paramref name="failedAttempts"/> failures in a row (at least 1).</summary>
    /// <param name="failedAttempts">Failures in a row: the first waits <paramref name="initial"/>, each next one twice as long.</param>
    /// <param name="initial">The first wait.</param>
    /// <param name="max">The cap, applied after the spread too.</param>
    /// <param name="jitter">The spread, a fraction from 0 to 1.</param>
    /// <param name="random">A number from 0 (inclusive) to 1 (exclusive).</param>
    public static TimeSpan Delay(int failedAttempts, TimeSpan initial, TimeSpan max, double jitter, double random)
    {
        // 2^30 times any initial delay is past every cap, so the shift never overflows.
        int doublings = Math.Clamp(failedAttempts - 1, 0, 30);
        double ticks = Math.Min(initial.Ticks * (double)(1L << doublings), max.Ticks);
        ticks *= 1.0 + (jitter * ((random * 2.0) - 1.0));
        return TimeSpan.FromTicks((long)Math.Clamp(ticks, 0.0, max.Ticks));
    }
}
