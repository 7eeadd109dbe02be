namespace PageRange.Transport;

/// <summary>
/// Whether a <see cref="WaitStrategy.SpinThenPark"/> waiter spins (for the configured spin, the cap) or parks at once,
/// learned from how long its recent waits took in all, spin and park included: it parks at once only while the peer
/// keeps answering in far longer than the cap, where any spin is wasted CPU.
/// </summary>
/// <remarks>
/// <para>
/// Why not a shorter spin for a fast peer (twice its usual wait, say): on two cores the two sides' waits are coupled.
/// A waiter that parks makes the peer's next wait include a futex wake and a thread's wake-up (tens of microseconds on
/// a VM whose idle vCPU halts), that wait then misses the peer's own short spin and it parks too, and both settle into
/// parking every time: a 2 µs round trip became 15-50 µs (benchmarks/README, "Spin-then-park with a fast peer"). A
/// spin that ends when the answer comes costs nothing extra while the peer is fast, so the full cap is the right spin
/// whenever spinning at all; what is worth learning is only when not to spin.
/// </para>
/// <para>
/// Every wait reports its whole duration (<see cref="Record"/>). A wait longer than <see cref="SlowWaitFactor"/> times the
/// cap is slow: it adds one to a score (at most <see cref="MaxScore"/>); any other wait takes <see cref="FastCredit"/>
/// off. From <see cref="ParkThreshold"/> up the waiter parks at once. The waits measured while parking at once include
/// the peer's wake of us, which is what the score then needs: a peer that speeds up shows as waits of tens of
/// microseconds (fast, well under the slow bound) and spinning comes back after two of them, with no probing spin.
/// The slow bound sits far above a wake-up's latency for the same reason: two parked sides that answer each other at
/// once must not look slow to each other.
/// </para>
/// <para>
/// Local state only (never in shared memory): the peer can influence it only through its timing, which is the point.
/// Several threads may wait on the same doorbell; they share one budget and update it without synchronisation. A lost
/// update only skews a heuristic and the score is clamped where it is written, so a race can never produce a spin
/// outside {0, cap}. No allocation, no system call.
/// </para>
/// </remarks>
internal struct SpinBudget
{
    /// <summary>A wait longer than this many caps is slow: the peer took far longer than any spin would cover.</summary>
    internal const int SlowWaitFactor = 8;

    /// <summary>The score (slow waits net of fast ones) from which the waiter parks at once.</summary>
    internal const int ParkThreshold = 4;

    /// <summary>The most the score counts: how far a long slow spell can push it.</summary>
    internal const int MaxScore = 6;

    /// <summary>What one wait that was not slow takes off the score.</summary>
    internal const int FastCredit = 2;

    private int _slowScore;

    /// <summary>Whether the waiter currently parks at once.</summary>
    internal readonly bool ParksAtOnce => _slowScore >= ParkThreshold;

    /// <summary>Slow waits net of fast ones, for tests and the state dump.</summary>
    internal readonly int SlowScore => _slowScore;

    /// <summary>How long the next wait spins, in <see cref="System.Diagnostics.Stopwatch"/> ticks: 0 to park at once, else <paramref name="capTicks"/>.</summary>
    /// <param name="capTicks">The configured spin duration; a negative value counts as 0.</param>
    /// <remarks>Call once per wait that is not ready at once, then <see cref="Record"/> when it ends.</remarks>
    internal readonly long Next(long capTicks) => capTicks <= 0 || ParksAtOnce ? 0 : capTicks;

    /// <summary>A wait ended (ready, deadline passed or cancelled) after <paramref name="waitedTicks"/> in all, spin and park included.</summary>
    /// <param name="waitedTicks">From the start of the wait to its end, in <see cref="System.Diagnostics.Stopwatch"/> ticks.</param>
    /// <param name="capTicks">The configured spin duration.</param>
    internal void Record(long waitedTicks, long capTicks)
    {
        if (capTicks <= 0)
        {
            return;
        }
        long slowBound = capTicks >= long.MaxValue / SlowWaitFactor ? long.MaxValue : capTicks * SlowWaitFactor;
        int score = _slowScore;
        _slowScore = waitedTicks > slowBound
            ? Math.Min(MaxScore, score + 1)
            : Math.Max(0, score - FastCredit);
    }
}
