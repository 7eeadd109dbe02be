namespace PageRange.Transport;

/// <summary>
/// How long a <see cref="WaitStrategy.SpinThenPark"/> waiter spins before it parks, learned from its recent waits: about
/// as long as the peer usually takes, never longer than the configured spin (the cap), and not at all while the peer
/// keeps taking longer than the cap, with a full-length probe now and then so it notices when traffic speeds up.
/// </summary>
/// <remarks>
/// <para>
/// Every wait that spins ends as a hit (the condition turned ready while spinning: the wait time is known) or a miss
/// (it did not: the waiter parked, or its deadline passed, and the true wait time is unknown, only that it was longer
/// than the spin). Hits feed an exponentially weighted mean of the wait time (weight 1/8); a miss raises that mean by a
/// quarter (so a budget that was too short grows until waits end inside it again). The budget is twice the mean, at
/// least <see cref="MinimumTicks"/>, at most the cap.
/// </para>
/// <para>
/// A miss score counts recent misses (+1 each, at most <see cref="MaxScore"/>; a hit takes off
/// <see cref="HitCredit"/>). From <see cref="ParkThreshold"/> up the waiter parks at once: the peer answers in longer
/// than the cap, so any spin would be wasted CPU. Every <see cref="ProbeInterval"/>-th wait in that state spins the full
/// cap as a probe, and after a probe hit the next wait probes again, so two hits in a row bring spinning back.
/// </para>
/// <para>
/// Local state only (never in shared memory): the peer can influence it only through its timing, which is the point.
/// Several threads may wait on the same doorbell; they share one budget and update it without synchronisation. A lost
/// update only skews a heuristic, every value is clamped where it is used, and a 64-bit read or write is never torn,
/// so a race can never produce a budget outside [0, cap]. No allocation, no system call.
/// </para>
/// </remarks>
internal struct SpinBudget
{
    /// <summary>Misses that, net of hits, make the waiter park at once.</summary>
    internal const int ParkThreshold = 4;

    /// <summary>The most the miss score counts: how far a long slow spell can push it.</summary>
    internal const int MaxScore = 8;

    /// <summary>What one hit takes off the miss score.</summary>
    internal const int HitCredit = 3;

    /// <summary>While parking at once, one wait in this many spins the full cap as a probe.</summary>
    internal const int ProbeInterval = 16;

    /// <summary>The shortest budget while spinning: a few hundred nanoseconds, so a very fast peer is not missed by the clock's granularity.</summary>
    internal const long MinimumNanoseconds = 500;

    private static readonly long s_minimumTicks = Math.Max(1, (long)(MinimumNanoseconds * (System.Diagnostics.Stopwatch.Frequency / 1e9)));

    // Mean wait of recent hits, in Stopwatch ticks; 0 = nothing learned yet (spin the cap).
    private long _meanTicks;
    private int _missScore;
    private int _waitsSinceProbe;
    private bool _probeNext;

    /// <summary>The shortest budget while spinning, in <see cref="System.Diagnostics.Stopwatch"/> ticks.</summary>
    internal static long MinimumTicks => s_minimumTicks;

    /// <summary>Whether the waiter currently parks at once (outside probes).</summary>
    internal readonly bool ParksAtOnce => _missScore >= ParkThreshold;

    /// <summary>The learned mean wait of recent hits, in <see cref="System.Diagnostics.Stopwatch"/> ticks (0 before the first).</summary>
    internal readonly long MeanTicks => _meanTicks;

    /// <summary>How long the next wait spins, in <see cref="System.Diagnostics.Stopwatch"/> ticks: 0 to park at once, at most <paramref name="capTicks"/>.</summary>
    /// <param name="capTicks">The configured spin duration; a negative value counts as 0.</param>
    /// <remarks>Call once per wait that is not ready at once, then <see cref="RecordHit"/> or <see cref="RecordMiss"/>.</remarks>
    internal long Next(long capTicks)
    {
        if (capTicks <= 0)
        {
            return 0;
        }
        if (_missScore >= ParkThreshold)
        {
            if (_probeNext || ++_waitsSinceProbe >= ProbeInterval)
            {
                _waitsSinceProbe = 0;
                _probeNext = false;
                return capTicks;
            }
            return 0;
        }
        long mean = _meanTicks;
        if (mean <= 0)
        {
            return capTicks;
        }
        // Twice the mean: waits spread around it, and a spin a little too long costs far less than a park.
        long budget = mean >= long.MaxValue / 2 ? long.MaxValue : mean * 2;
        return Math.Clamp(budget, Math.Min(s_minimumTicks, capTicks), capTicks);
    }

    /// <summary>The wait ended while spinning, after <paramref name="waitedTicks"/>.</summary>
    /// <param name="waitedTicks">From the start of the spin to the condition seen ready; clamped to [1, cap].</param>
    /// <param name="capTicks">The configured spin duration.</param>
    internal void RecordHit(long waitedTicks, long capTicks)
    {
        // At least one tick: a mean of 0 means "nothing learned yet".
        long cap = Math.Max(capTicks, 1);
        long sample = Math.Clamp(waitedTicks, 1, cap);
        long mean = _meanTicks;
        // The first hit sets the mean; later ones move it by an eighth of the difference.
        mean = mean <= 0 ? sample : mean + ((sample - mean) / 8);
        _meanTicks = Math.Clamp(mean, 1, cap);
        bool wasParking = _missScore >= ParkThreshold;
        _missScore = Math.Max(0, _missScore - HitCredit);
        // A probe hit while parking at once: look again at the next wait rather than ProbeInterval waits later.
        _probeNext = wasParking && _missScore >= ParkThreshold;
    }

    /// <summary>The wait did not end while spinning (it parked, or its deadline passed).</summary>
    /// <param name="capTicks">The configured spin duration.</param>
    internal void RecordMiss(long capTicks)
    {
        long cap = Math.Max(capTicks, 0);
        long mean = _meanTicks;
        if (mean > 0)
        {
            // Grow by a quarter (at least one tick): a budget just short of the usual wait misses every time otherwise.
            _meanTicks = Math.Min(cap, mean + Math.Max(1, mean / 4));
        }
        _missScore = Math.Min(MaxScore, _missScore + 1);
        _probeNext = false;
    }
}
