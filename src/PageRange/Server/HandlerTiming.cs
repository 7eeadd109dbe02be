using System.Diagnostics;

namespace PageRange.Server;

/// <summary>
/// Whether a handler runs on the thread that received its call (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>),
/// learned from how long its recent runs took up to their return or first real <c>await</c>.
/// </summary>
/// <remarks>
/// A run within <see cref="FastBound"/> is fast. After <see cref="FastRunsBeforeInline"/> fast runs in a row the handler
/// runs inline; a run that was not fast ends the streak, and one that was inline doubles the streak needed next time (up
/// to 2^10 times), so a handler that now and then blocks stops holding up its client's other calls; a streak twice as
/// long as the one needed forgets one doubling. Plain fields,
/// updated by whichever threads run the handler without synchronisation: a lost update only skews a heuristic whose
/// worst case is a run on the other path, and an inline run that blocks is rescued by the server's watch.
/// </remarks>
internal sealed class HandlerTiming
{
    /// <summary>The longest a run may take and still count as fast.</summary>
    internal static readonly TimeSpan FastBound = TimeSpan.FromMicroseconds(100);

    /// <summary>Fast runs in a row before the first inline run.</summary>
    internal const int FastRunsBeforeInline = 4;

    private const int MaxDoublings = 10;

    private static readonly long s_fastBoundTicks = (long)(FastBound.TotalSeconds * Stopwatch.Frequency);

    private int _fastStreak;
    private int _slowInlineRuns;

    /// <summary>Whether the next run may be inline.</summary>
    internal bool RunsInline => _fastStreak >= FastRunsBeforeInline << Math.Min(_slowInlineRuns, MaxDoublings);

    /// <summary>Inline runs that were not fast (each doubles the streak needed), for tests.</summary>
    internal int SlowInlineRuns => _slowInlineRuns;

    /// <summary>A run ended after <paramref name="elapsedTicks"/> (<see cref="Stopwatch"/> ticks); <paramref name="inline"/>: on the receiving thread.</summary>
    internal void Record(long elapsedTicks, bool inline)
    {
        if (elapsedTicks <= s_fastBoundTicks)
        {
            // Saturating: a handler fast for ever must not wrap around to a streak that says "not yet".
            if (_fastStreak < int.MaxValue)
            {
                _fastStreak++;
            }
            if (_slowInlineRuns > 0 && _fastStreak >= FastRunsBeforeInline << (_slowInlineRuns + 1))
            {
                // Fast for twice as long as it had to wait: one slow run (a preemption, a GC pause) is forgotten.
                _slowInlineRuns--;
            }
            return;
        }
        _fastStreak = 0;
        if (inline && _slowInlineRuns < MaxDoublings)
        {
            _slowInlineRuns++;
        }
    }
}
