using System.Diagnostics;

namespace PageRange.Tests.Infrastructure;

/// <summary>Waiting for a condition another thread or process makes true, bounded by <see cref="TestTimeouts.Long"/>.</summary>
internal static class Poll
{
    /// <summary>Re-checks <paramref name="condition"/> every 10 ms until it holds; fails the test naming <paramref name="what"/> after <see cref="TestTimeouts.Long"/>.</summary>
    /// <remarks>A poll interval, not a race cover: the condition is re-checked until the bound.</remarks>
    internal static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, $"timed out waiting until {what}");
            await Task.Delay(10);
        }
    }

    /// <summary>Re-checks <paramref name="condition"/> on this thread (yielding between checks) for at most <see cref="TestTimeouts.Long"/>.</summary>
    /// <returns>Whether it held in time.</returns>
    /// <remarks>For a thread that must not await (it is itself part of what is measured or blocked).</remarks>
    internal static bool SpinUntil(Func<bool> condition)
    {
        long deadline = Environment.TickCount64 + (long)TestTimeouts.Long.TotalMilliseconds;
        while (!condition())
        {
            if (Environment.TickCount64 >= deadline)
            {
                return false;
            }
            Thread.Yield();
        }
        return true;
    }
}
