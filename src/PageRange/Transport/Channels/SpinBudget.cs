namespace PageRange.Transport;

/// <summary>
/// Whether a <see cref="WaitStrategy.SpinThenPark"/> waiter spins (for the configured spin, the cap) or parks at once,
/// learned from how long its recent waits took in all, spin and park included: it parks at once while the peer keeps
/// answering in far longer than the cap, where any spin is wasted CPU; and, after a long time away from the doorbell,
/// while such waits keep outlasting their spin.
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
/// The other side of a slow exchange: a server whose handler took a millisecond waits next for the client's next
/// call. That wait is short by the rule above (tens of microseconds), but the client, which waited the millisecond,
/// parked, so the call comes only after the client's wake-up, usually longer than the cap: the spin is lost every time
/// (20 µs of CPU a round trip). So a wait that begins more than the slow bound after this side's previous wait ended
/// (<see cref="IsAfterAbsence"/>: this side was away, handling or replying, long enough for the peer to park) is
/// scored on its own: a spin it answers adds one to a second score, an answer inside the spin takes
/// <see cref="FastCredit"/> off, and from <see cref="ParkThreshold"/> up such waits park at once, except one in
/// <see cref="ProbeInterval"/>, which spins the cap to see whether the peer answers within it again (a parked wait's
/// length includes our own wake-up, so it cannot tell). Waits after no absence never look at this score: a fast
/// exchange, where neither side is away long, keeps spinning, and the coupling above cannot start from here.
/// </para>
/// <para>
/// Local state only (never in shared memory): the peer can influence it only through its timing, which is the point.
/// Several threads may wait on the same doorbell; they share one budget and update it without synchronisation. A lost
/// update only skews a heuristic and each score is clamped where it is written, so a race can never produce a spin
/// outside {0, cap}. No allocation, no system call.
/// </para>
/// </remarks>
internal struct SpinBudget
{
    /// <summary>A wait longer than this many caps is slow: the peer took far longer than any spin would cover. Also the absence that makes a wait one after an absence.</summary>
    internal const int SlowWaitFactor = 8;

    /// <summary>The score (slow waits net of fast ones) from which the waiter parks at once.</summary>
    internal const int ParkThreshold = 4;

    /// <summary>The most the score counts: how far a long slow spell can push it.</summary>
    internal const int MaxScore = 6;

    /// <summary>What one wait that was not slow takes off the score.</summary>
    internal const int FastCredit = 2;

    /// <summary>While waits after an absence park at once, one in this many spins the cap anyway: the probe.</summary>
    internal const int ProbeInterval = 8;

    private int _slowScore;
    private int _absenceScore;
    private int _sinceProbe;
    private long _lastEnd;

    /// <summary>Whether the waiter currently parks at once.</summary>
    internal readonly bool ParksAtOnce => _slowScore >= ParkThreshold;

    /// <summary>Whether a wait after an absence currently parks at once (but for the probes).</summary>
    internal readonly bool ParksAtOnceAfterAbsence => _absenceScore >= ParkThreshold;

    /// <summary>Slow waits net of fast ones, for tests and the state dump.</summary>
    internal readonly int SlowScore => _slowScore;

    /// <summary>Spins after an absence that the peer did not answer, net of those it did, for tests and the state dump.</summary>
    internal readonly int AbsenceScore => _absenceScore;

    /// <summary>Whether a wait starting at <paramref name="startTimestamp"/> comes after an absence: more than the slow bound after the previous wait ended.</summary>
    /// <param name="startTimestamp">The wait's start, a <see cref="System.Diagnostics.Stopwatch"/> timestamp.</param>
    /// <param name="capTicks">The configured spin duration.</param>
    internal readonly bool IsAfterAbsence(long startTimestamp, long capTicks) =>
        capTicks > 0 && _lastEnd != 0 && startTimestamp - _lastEnd > SlowBound(capTicks);

    /// <summary>How long the next wait spins, in <see cref="System.Diagnostics.Stopwatch"/> ticks: 0 to park at once, else <paramref name="capTicks"/>.</summary>
    /// <param name="capTicks">The configured spin duration; a negative value counts as 0.</param>
    /// <param name="afterAbsence">Whether the wait comes after an absence (<see cref="IsAfterAbsence"/>).</param>
    /// <remarks>Call once per wait that is not ready at once, then <see cref="Record"/> when it ends.</remarks>
    internal long Next(long capTicks, bool afterAbsence)
    {
        if (capTicks <= 0 || ParksAtOnce)
        {
            return 0;
        }
        if (afterAbsence && ParksAtOnceAfterAbsence)
        {
            int sinceProbe = _sinceProbe + 1;
            if (sinceProbe < ProbeInterval)
            {
                _sinceProbe = sinceProbe;
                return 0;
            }
            _sinceProbe = 0;
        }
        return capTicks;
    }

    /// <summary>A wait ended (ready, deadline passed or cancelled).</summary>
    /// <param name="startTimestamp">When it began (before any spin), a <see cref="System.Diagnostics.Stopwatch"/> timestamp.</param>
    /// <param name="endTimestamp">When it ended, spin and park included.</param>
    /// <param name="capTicks">The configured spin duration.</param>
    /// <param name="afterAbsence">What <see cref="IsAfterAbsence"/> said when it began.</param>
    /// <param name="spun">Whether it spun (<see cref="Next"/> returned the cap).</param>
    /// <param name="answeredWhileSpinning">Whether the condition held before the spin ran out.</param>
    internal void Record(long startTimestamp, long endTimestamp, long capTicks, bool afterAbsence, bool spun, bool answeredWhileSpinning)
    {
        if (capTicks <= 0)
        {
            return;
        }
        _lastEnd = endTimestamp;
        int score = _slowScore;
        _slowScore = endTimestamp - startTimestamp > SlowBound(capTicks)
            ? Math.Min(MaxScore, score + 1)
            : Math.Max(0, score - FastCredit);
        if (afterAbsence && spun)
        {
            // Only a spin says whether a spin pays: a parked wait's length includes our own wake-up.
            int absenceScore = _absenceScore;
            _absenceScore = answeredWhileSpinning
                ? Math.Max(0, absenceScore - FastCredit)
                : Math.Min(MaxScore, absenceScore + 1);
        }
    }

    private static long SlowBound(long capTicks) =>
        capTicks >= long.MaxValue / SlowWaitFactor ? long.MaxValue : capTicks * SlowWaitFactor;
}
