using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>The learned spin of <see cref="WaitStrategy.SpinThenPark"/>, fed deterministic wait times (no clock involved).</summary>
public sealed class SpinBudgetTests
{
    // Ticks as Stopwatch counts them on Linux (1 ns): a 20 µs cap, the default spin duration.
    private const long Cap = 20_000;

    [Fact]
    public void Next_NothingLearned_SpinsTheCap()
    {
        SpinBudget budget = default;
        Assert.Equal(Cap, budget.Next(Cap));
        Assert.False(budget.ParksAtOnce);
        Assert.False(budget.HasBudget);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Next_CapZeroOrNegative_NeverSpins(long cap)
    {
        SpinBudget budget = default;
        Assert.Equal(0, budget.Next(cap));
        for (int i = 0; i < SpinBudget.RecomputeInterval * 2; i++)
        {
            budget.RecordHit(100, cap);
        }
        Assert.Equal(0, budget.Next(cap));
    }

    [Fact]
    public void Next_FewerSamplesThanTheRecomputeInterval_KeepsSpinningTheCap()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.RecomputeInterval - 1; i++)
        {
            budget.RecordMiss(Cap, Cap);
            Assert.Equal(Cap, budget.Next(Cap));
        }
    }

    [Fact]
    public void Next_FastSteadyPeer_SpinsJustOverItsWait()
    {
        SpinBudget budget = Fed(Repeat(2_000, 200));
        long next = budget.Next(Cap);
        // The bucket of 2 µs ends at 2,048 ticks; a quarter more on top.
        Assert.Equal(2_560, next);
        Assert.False(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_FastPeerWithATail_SpinsThroughTheTail()
    {
        // The regression of the mean: 95% of the answers in 1.5 µs, 5% in 9-12 µs (the peer preempted). Twice the mean
        // (about 3.6 µs) parked on every one of the tail; the cheapest spin covers it, since each park costs a cap.
        long[] waits = new long[400];
        for (int i = 0; i < waits.Length; i++)
        {
            waits[i] = i % 20 == 0 ? 9_000 + (i % 3 * 1_500) : 1_500;
        }
        SpinBudget budget = Fed(waits);
        Assert.InRange(budget.Next(Cap), 12_000, Cap);
    }

    [Fact]
    public void Next_FastPeerWithRareVerySlowAnswers_IgnoresWhatOutlastsTheCap()
    {
        // 2% of the waits outlast the cap (an idle moment between calls): spinning longer would not catch them.
        long[] waits = new long[400];
        for (int i = 0; i < waits.Length; i++)
        {
            waits[i] = i % 50 == 0 ? long.MaxValue : 1_500;
        }
        SpinBudget budget = Fed(waits);
        Assert.InRange(budget.Next(Cap), 1_500, 2_500);
    }

    [Fact]
    public void Next_HalfFastHalfSlow_SpinsForTheFastHalf()
    {
        long[] waits = new long[400];
        for (int i = 0; i < waits.Length; i++)
        {
            waits[i] = i % 2 == 0 ? long.MaxValue : 2_000;
        }
        SpinBudget budget = Fed(waits);
        Assert.InRange(budget.Next(Cap), 2_000, 3_000);
        Assert.False(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_FastPeerNoWaitOutlastsTheCap_SpinsTheLongestSeenWait()
    {
        // Nothing outlasts the cap: every wait is cheaper spun than parked, so the budget covers the slowest one seen.
        long[] waits = new long[200];
        for (int i = 0; i < waits.Length; i++)
        {
            waits[i] = i % 10 == 0 ? 6_000 : 1_000;
        }
        SpinBudget budget = Fed(waits);
        Assert.InRange(budget.Next(Cap), 6_000, 8_000);
    }

    [Fact]
    public void Next_MostWaitsOutlastTheCap_ParksAtOnce()
    {
        // One answer in 21 within 2 µs: spinning for it costs the other twenty a spin each, more than the park it saves.
        // A probe that catches the quick one may bring a short spell of spinning; the next probes end it.
        long[] waits = new long[1_000];
        for (int i = 0; i < waits.Length; i++)
        {
            waits[i] = i % 21 == 7 ? 2_000 : long.MaxValue;
        }
        SpinBudget budget = default;
        int spun = Feed(ref budget, waits);
        Assert.InRange(spun, 0, waits.Length / 5);
    }

    [Fact]
    public void Next_PeerSpeedsUp_BudgetFollowsItDown()
    {
        // One wait in ten outlasts the cap in both phases: the 15 µs answers were worth spinning for, the old ones fade.
        long[] slow = new long[200];
        long[] fast = new long[400];
        for (int i = 0; i < fast.Length; i++)
        {
            if (i < slow.Length)
            {
                slow[i] = i % 10 == 3 ? long.MaxValue : 15_000;
            }
            fast[i] = i % 10 == 3 ? long.MaxValue : 1_000;
        }
        SpinBudget budget = Fed(slow);
        Assert.InRange(budget.Next(Cap), 15_000, Cap);
        Feed(ref budget, fast);
        Assert.InRange(budget.Next(Cap), 1_000, 1_600);
    }

    [Fact]
    public void Next_VeryFastPeer_SpinsAtLeastTheMinimum()
    {
        SpinBudget budget = Fed(Repeat(1, 64));
        Assert.Equal(Math.Max(SpinBudget.MinimumTicks, 400), budget.Next(Cap));
    }

    [Fact]
    public void RecordMiss_ShorterThanTheCap_LearnsNothing()
    {
        SpinBudget budget = Fed(Repeat(1_000, 64));
        int samples = budget.Samples;
        long next = budget.Next(Cap);
        for (int i = 0; i < 100; i++)
        {
            budget.RecordMiss(next, Cap);
        }
        Assert.Equal(samples, budget.Samples);
        Assert.Equal(next, budget.Next(Cap));
    }

    [Fact]
    public void Next_PeerSlowsDownWithinTheCap_ProbesFindTheNewWaitAndTheBudgetCoversIt()
    {
        SpinBudget budget = Fed(Repeat(1_000, 64));
        Assert.InRange(budget.Next(Cap), 1_000, 1_600);
        // The peer now takes 6 µs: the budget misses every wait, and only the probes (one in ProbeInterval) see why.
        Feed(ref budget, Repeat(6_000, SpinBudget.ProbeInterval * 2));
        Assert.InRange(budget.Next(Cap), 6_000, Cap);
        Assert.False(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_SlowPeer_ParksAtOnceAfterTheFirstRecompute()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.RecomputeInterval; i++)
        {
            Assert.Equal(Cap, budget.Next(Cap));
            budget.RecordMiss(Cap, Cap);
        }
        Assert.True(budget.ParksAtOnce);
        Assert.Equal(0, budget.Next(Cap));
    }

    [Fact]
    public void Next_ParkingAtOnce_ProbesTheFullCapOnceInEveryInterval()
    {
        SpinBudget budget = ParkingAtOnce();
        int probes = 0;
        for (int i = 0; i < SpinBudget.ProbeInterval * 4; i++)
        {
            long next = budget.Next(Cap);
            Assert.True(next == 0 || next == Cap, $"wait {i} spins {next}");
            if (next == Cap)
            {
                probes++;
                budget.RecordMiss(Cap, Cap);
            }
        }
        Assert.Equal(4, probes);
        Assert.True(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_ParkingAtOnceThenTrafficSpeedsUp_ProbeHitsInARowBringSpinningBack()
    {
        SpinBudget budget = ParkingAtOnce();
        long next;
        do
        {
            next = budget.Next(Cap);
        }
        while (next == 0);
        Assert.Equal(Cap, next);
        int probes = 0;
        while (budget.ParksAtOnce)
        {
            Assert.Equal(Cap, next);
            budget.RecordHit(2_000, Cap);
            probes++;
            // A probe hit: the very next wait probes again instead of waiting for the next interval.
            next = budget.Next(Cap);
            Assert.True(probes < 32, "spinning never came back");
        }
        Assert.InRange(budget.Next(Cap), 2_000, 3_000);
    }

    [Fact]
    public void Next_CapChanges_BudgetIsRecomputedForTheNewCap()
    {
        SpinBudget budget = Fed(Repeat(15_000, 64));
        // Under a 2 µs cap every wait seen outlasts it: park at once (or probe the new cap).
        Assert.InRange(budget.Next(Cap / 10), 0, Cap / 10);
        Assert.True(budget.ParksAtOnce);
        Assert.Equal(Cap, budget.Next(Cap));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(319, 0)]
    [InlineData(320, 1)]
    [InlineData(511, 3)]
    [InlineData(512, 4)]
    [InlineData(long.MaxValue, SpinBudget.BucketCount - 1)]
    public void BucketOf_Boundaries_QuarterOctaves(long ticks, int bucket) => Assert.Equal(bucket, SpinBudget.BucketOf(ticks));

    [Fact]
    public void BucketOf_EveryBucket_HoldsItsBoundsAndNothingElse()
    {
        for (int i = 1; i < SpinBudget.BucketCount; i++)
        {
            long lower = SpinBudget.LowerBound(i);
            Assert.Equal(i, SpinBudget.BucketOf(lower));
            Assert.Equal(i - 1, SpinBudget.BucketOf(lower - 1));
            Assert.True(SpinBudget.LowerBound(i + 1) > lower);
        }
    }

    [Fact]
    public void Budget_AnySequence_StaysWithinZeroAndTheCap()
    {
        var random = new Random(12);
        SpinBudget budget = default;
        for (int i = 0; i < 20_000; i++)
        {
            long cap = random.Next(0, 4) == 0 ? random.NextInt64(-10, 100) : random.Next(0, 2) == 0 ? Cap : long.MaxValue;
            long next = budget.Next(cap);
            Assert.InRange(next, 0, Math.Max(cap, 0));
            if (random.Next(3) == 0)
            {
                budget.RecordMiss(random.NextInt64(long.MinValue, long.MaxValue), cap);
            }
            else
            {
                budget.RecordHit(random.NextInt64(long.MinValue, long.MaxValue), cap);
            }
            Assert.InRange(budget.Samples, 0, ushort.MaxValue * (SpinBudget.BucketCount + 1));
        }
    }

    private static long[] Repeat(long wait, int count) => Enumerable.Repeat(wait, count).ToArray();

    private static SpinBudget Fed(long[] waits)
    {
        SpinBudget budget = default;
        Feed(ref budget, waits);
        return budget;
    }

    /// <summary>Plays the waits through the budget as a doorbell would: a wait longer than the spin is a miss at the spin.</summary>
    /// <returns>How many waits spun (probes included).</returns>
    private static int Feed(ref SpinBudget budget, long[] waits)
    {
        int spun = 0;
        foreach (long wait in waits)
        {
            long spin = budget.Next(Cap);
            if (spin == 0)
            {
                continue;
            }
            spun++;
            if (wait <= spin)
            {
                budget.RecordHit(wait, Cap);
            }
            else
            {
                budget.RecordMiss(spin, Cap);
            }
        }
        return spun;
    }

    private static SpinBudget ParkingAtOnce()
    {
        SpinBudget budget = Fed(Repeat(long.MaxValue, 64));
        Assert.True(budget.ParksAtOnce);
        return budget;
    }
}
