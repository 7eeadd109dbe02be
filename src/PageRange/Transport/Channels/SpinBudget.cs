using System.Numerics;

namespace PageRange.Transport;

/// <summary>
/// How long a <see cref="WaitStrategy.SpinThenPark"/> waiter spins before it parks, learned from its recent waits: long
/// enough to catch the waits that end within the configured spin (the cap), tail included, and not at all while most
/// of them take longer than the cap, with a full-length probe now and then so it notices when traffic speeds up.
/// </summary>
/// <remarks>
/// <para>
/// Every wait that spins ends as a hit (the condition turned ready while spinning: the wait time is known) or a miss
/// (it did not: the waiter parked). Hits go into a histogram of recent wait times with four buckets per octave
/// (<see cref="BucketCount"/> two-byte counts, inline: no allocation); a miss after a full-cap spin counts as "over the
/// cap". A miss after a shorter spin says only that the wait was longer than the budget, not where: it is not counted.
/// Instead, while the budget is under the cap, every <see cref="ProbeInterval"/>-th wait spins the full cap as a probe,
/// and a probe that sees a wait the budget would have missed counts <see cref="ProbeInterval"/> times (it stands for
/// the waits above the budget that were not measured), so the histogram's part above the budget is an unbiased sample
/// rather than a guess. Each time the samples' weight reaches <see cref="DecayWeight"/> all counts halve: the
/// histogram describes roughly the last two hundred waits (the last dozen probes while parking at once).
/// </para>
/// <para>
/// The budget is the spin that costs least over that histogram, counting a park as costing the cap (the configured
/// spin is the user's price of a park: the classic spin-then-block rule, spin at most as long as blocking costs): a
/// spin of <c>b</c> costs each wait that ends within it its wait time, and each longer wait <c>b</c> plus a park. So
/// it covers a high percentile of the waits, as high as pays: a tail of waits a little longer than usual (the peer
/// preempted, an interrupt) is spun through as long as it is more frequent than the waits that outlast the cap
/// anyway, because each park it saves costs more than the extra spin. When most waits outlast the cap the cheapest
/// spin is none: the waiter parks at once. The chosen bucket's upper edge plus a quarter is spun, at least
/// <see cref="MinimumTicks"/>, at most the cap. The budget is recomputed every <see cref="RecomputeInterval"/> samples
/// (a walk over the buckets under the cap: a few dozen additions), and until that many samples are in, the waiter
/// spins the cap.
/// </para>
/// <para>
/// While parking at once only the probes learn anything (a park says only that the wake came, not when the peer
/// answered), and after a probe hit the next wait probes again, so a few quick answers in a row bring spinning back.
/// </para>
/// <para>
/// Local state only (never in shared memory): the peer can influence it only through its timing, which is the point.
/// Several threads may wait on the same doorbell; they share one budget and update it without synchronisation. A lost
/// update only skews a heuristic: every index is computed from a local and clamped, every count saturates, and the
/// budget is clamped to [0, cap] where it is used. No allocation, no system call.
/// </para>
/// </remarks>
internal struct SpinBudget
{
    /// <summary>Buckets of the histogram: four per octave from <see cref="BucketUnitTicks"/> up, about 15 ms at 1 tick = 1 ns.</summary>
    internal const int BucketCount = 64;

    /// <summary>Bucket 0 holds waits under five units; bucket i above that spans a quarter octave.</summary>
    internal const long BucketUnitTicks = 64;

    /// <summary>Weight of samples between two halvings of every count: how far back "recent" reaches.</summary>
    internal const int DecayWeight = 128;

    /// <summary>Samples between two recomputations of the budget (and before the first).</summary>
    internal const int RecomputeInterval = 4;

    /// <summary>While the budget is under the cap, one wait in this many spins the full cap as a probe.</summary>
    internal const int ProbeInterval = 16;

    /// <summary>The shortest budget while spinning: a few hundred nanoseconds, so a very fast peer is not missed by the clock's granularity.</summary>
    internal const long MinimumNanoseconds = 500;

    private static readonly long s_minimumTicks = Math.Max(1, (long)(MinimumNanoseconds * (System.Diagnostics.Stopwatch.Frequency / 1e9)));

    private WaitHistogram _counts;
    private int _overCap;
    private int _weightSinceDecay;
    private int _samplesSinceRecompute;

    // Valid once _hasBudget: 0 = park at once. _budgetCap is the cap it was computed for (a different cap recomputes).
    private long _budget;
    private long _budgetCap;
    private bool _hasBudget;
    private int _waitsSinceProbe;
    private bool _probeNext;
    private bool _probing;

    /// <summary>The shortest budget while spinning, in <see cref="System.Diagnostics.Stopwatch"/> ticks.</summary>
    internal static long MinimumTicks => s_minimumTicks;

    /// <summary>Whether the waiter currently parks at once (outside probes).</summary>
    internal readonly bool ParksAtOnce => _hasBudget && _budget == 0;

    /// <summary>Whether enough waits were seen to compute a budget (before that, the waiter spins the cap).</summary>
    internal readonly bool HasBudget => _hasBudget;

    /// <summary>The weight of the recent samples the histogram holds (decayed, waits over the cap included).</summary>
    internal readonly int Samples
    {
        get
        {
            int total = _overCap;
            foreach (ushort count in _counts)
            {
                total += count;
            }
            return total;
        }
    }

    /// <summary>How long the next wait spins, in <see cref="System.Diagnostics.Stopwatch"/> ticks: 0 to park at once, at most <paramref name="capTicks"/>.</summary>
    /// <param name="capTicks">The configured spin duration; a negative value counts as 0.</param>
    /// <remarks>Call once per wait that is not ready at once, then <see cref="RecordHit"/> or <see cref="RecordMiss"/>.</remarks>
    internal long Next(long capTicks)
    {
        _probing = false;
        if (capTicks <= 0)
        {
            return 0;
        }
        if (!_hasBudget)
        {
            return capTicks;
        }
        if (_budgetCap != capTicks)
        {
            Recompute(capTicks);
        }
        long budget = _budget;
        if (budget >= capTicks)
        {
            return capTicks;
        }
        if (_probeNext || ++_waitsSinceProbe >= ProbeInterval)
        {
            _waitsSinceProbe = 0;
            _probeNext = false;
            _probing = true;
            return capTicks;
        }
        return Math.Max(budget, 0);
    }

    /// <summary>The wait ended while spinning, after <paramref name="waitedTicks"/>.</summary>
    /// <param name="waitedTicks">From the start of the spin to the condition seen ready; clamped to [1, cap].</param>
    /// <param name="capTicks">The configured spin duration.</param>
    internal void RecordHit(long waitedTicks, long capTicks)
    {
        long cap = Math.Max(capTicks, 1);
        bool wasParking = ParksAtOnce;
        long sample = Math.Clamp(waitedTicks, 1, cap);
        // A probe that saw a wait the normal budget would have missed stands for every such wait it did not see.
        int weight = _probing && sample > _budget ? ProbeInterval : 1;
        Add(BucketOf(sample), weight);
        Learned(cap, weight, recomputeNow: wasParking || weight > 1);
        // A probe hit while parking at once: look again at the next wait rather than ProbeInterval waits later.
        _probeNext = wasParking && ParksAtOnce;
    }

    /// <summary>The wait did not end within a spin of <paramref name="spunTicks"/> (it parked).</summary>
    /// <param name="spunTicks">How long the waiter spun: a full-cap spin says the wait outlasted the cap; a shorter one
    /// says too little to learn from (only probes, which spin the cap, measure the waits above the budget).</param>
    /// <param name="capTicks">The configured spin duration.</param>
    internal void RecordMiss(long spunTicks, long capTicks)
    {
        long cap = Math.Max(capTicks, 1);
        if (spunTicks < cap)
        {
            _probeNext = false;
            return;
        }
        bool wasParking = ParksAtOnce;
        int weight = _probing ? ProbeInterval : 1;
        _overCap = Math.Min(_overCap + weight, ushort.MaxValue);
        Learned(cap, weight, recomputeNow: wasParking || weight > 1);
        _probeNext = false;
    }

    /// <summary>The bucket of a wait of <paramref name="ticks"/>: 0 below five units, then four per octave, the last one open-ended.</summary>
    internal static int BucketOf(long ticks)
    {
        long units = ticks / BucketUnitTicks;
        if (units < 5)
        {
            return 0;
        }
        int octave = BitOperations.Log2((ulong)units);
        int quarter = (int)(units >> (octave - 2)) & 3;
        return Math.Min(((octave - 2) * 4) + quarter, BucketCount - 1);
    }

    /// <summary>The smallest wait of bucket <paramref name="bucket"/> (0 to <see cref="BucketCount"/>: the last is the end of the range).</summary>
    internal static long LowerBound(int bucket)
    {
        if (bucket <= 0)
        {
            return 0;
        }
        int octave = (bucket / 4) + 2;
        return (4L + (bucket % 4)) << (octave - 2) << BitOperations.Log2(BucketUnitTicks);
    }

    private void Add(int bucket, int weight)
    {
        // The index is computed from a local and clamped: a race cannot take it out of range.
        int index = Math.Clamp(bucket, 0, BucketCount - 1);
        _counts[index] = (ushort)Math.Min(_counts[index] + weight, ushort.MaxValue);
    }

    private void Learned(long cap, int weight, bool recomputeNow)
    {
        _weightSinceDecay += weight;
        if (_weightSinceDecay >= DecayWeight)
        {
            _weightSinceDecay = 0;
            for (int i = 0; i < BucketCount; i++)
            {
                _counts[i] = (ushort)(_counts[i] >> 1);
            }
            _overCap >>= 1;
        }
        if (recomputeNow || ++_samplesSinceRecompute >= RecomputeInterval)
        {
            Recompute(cap);
        }
    }

    /// <summary>Picks the spin that costs least over the histogram, a park costing the cap (see the remarks).</summary>
    private void Recompute(long cap)
    {
        _samplesSinceRecompute = 0;
        double total = Samples;
        if (total <= 0 || cap <= 0)
        {
            _hasBudget = false;
            return;
        }
        // Doubles: a cap of hours times a hundred samples must not overflow, and the comparison only needs to be close.
        double park = cap;
        double bestCost = total * park;
        long best = 0;
        double below = 0;
        double waitedBelow = 0;
        for (int i = 0; i < BucketCount; i++)
        {
            long lower = LowerBound(i);
            if (lower > cap)
            {
                break;
            }
            int count = _counts[i];
            if (count == 0)
            {
                continue;
            }
            long upper = Math.Min(LowerBound(i + 1), cap);
            below += count;
            waitedBelow += count * ((lower + upper) / 2.0);
            double cost = waitedBelow + ((total - below) * (upper + park));
            if (cost < bestCost)
            {
                bestCost = cost;
                best = upper;
            }
        }
        // A quarter more than the bucket's edge: the histogram lags, and a spin a little too long costs less than a park.
        _budget = best <= 0 ? 0 : Math.Clamp(best + (best / 4), Math.Min(s_minimumTicks, cap), cap);
        _budgetCap = cap;
        _hasBudget = true;
    }
}
