using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>The learned spin of <see cref="WaitStrategy.SpinThenPark"/>, fed deterministic wait times (no clock involved).</summary>
public sealed class SpinBudgetTests
{
    // Abstract ticks: the budget only compares and scales them. The cap is far above SpinBudget.MinimumTicks.
    private const long Cap = 1_000_000;

    [Fact]
    public void Next_NothingLearned_SpinsTheCap()
    {
        SpinBudget budget = default;
        Assert.Equal(Cap, budget.Next(Cap));
        Assert.False(budget.ParksAtOnce);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Next_CapZeroOrNegative_NeverSpins(long cap)
    {
        SpinBudget budget = default;
        Assert.Equal(0, budget.Next(cap));
        budget.RecordHit(100, cap);
        Assert.Equal(0, budget.Next(cap));
    }

    [Fact]
    public void Next_FastPeer_SpinsAboutTwiceItsUsualWait()
    {
        SpinBudget budget = default;
        for (int i = 0; i < 64; i++)
        {
            budget.Next(Cap);
            budget.RecordHit(20_000, Cap);
        }
        Assert.Equal(20_000, budget.MeanTicks);
        Assert.Equal(40_000, budget.Next(Cap));
        Assert.False(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_PeerSpeedsUp_BudgetFollowsItDown()
    {
        SpinBudget budget = default;
        budget.RecordHit(400_000, Cap);
        for (int i = 0; i < 64; i++)
        {
            budget.RecordHit(10_000, Cap);
        }
        long next = budget.Next(Cap);
        Assert.InRange(next, 20_000, 22_000);
    }

    [Fact]
    public void Next_VeryFastPeer_SpinsAtLeastTheMinimum()
    {
        SpinBudget budget = default;
        for (int i = 0; i < 64; i++)
        {
            budget.RecordHit(1, Cap);
        }
        Assert.Equal(SpinBudget.MinimumTicks, budget.Next(Cap));
    }

    [Fact]
    public void RecordMiss_BudgetTooShort_GrowsTheBudgetUntilTheCap()
    {
        SpinBudget budget = default;
        budget.RecordHit(10_000, Cap);
        long before = budget.Next(Cap);
        budget.RecordMiss(Cap);
        long after = budget.Next(Cap);
        Assert.True(after > before, $"{after} after a miss, {before} before");
        // Misses alone (a hit between them keeps the waiter spinning) never push it past the cap.
        for (int i = 0; i < 100; i++)
        {
            budget.RecordMiss(Cap);
            budget.RecordHit(Cap, Cap);
            Assert.InRange(budget.Next(Cap), 0, Cap);
        }
    }

    [Fact]
    public void Next_SlowPeer_ParksAtOnceAfterTheThreshold()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.ParkThreshold - 1; i++)
        {
            Assert.True(budget.Next(Cap) > 0);
            budget.RecordMiss(Cap);
        }
        Assert.False(budget.ParksAtOnce);
        Assert.True(budget.Next(Cap) > 0);
        budget.RecordMiss(Cap);
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
                budget.RecordMiss(Cap);
            }
        }
        Assert.Equal(4, probes);
        Assert.True(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_ParkingAtOnceThenTrafficSpeedsUp_TwoProbeHitsBringSpinningBack()
    {
        SpinBudget budget = ParkingAtOnce();
        long next;
        do
        {
            next = budget.Next(Cap);
        }
        while (next == 0);
        Assert.Equal(Cap, next);
        budget.RecordHit(5_000, Cap);
        // A probe hit: the very next wait probes again instead of waiting for the next interval.
        Assert.Equal(Cap, budget.Next(Cap));
        budget.RecordHit(5_000, Cap);
        Assert.False(budget.ParksAtOnce);
        Assert.InRange(budget.Next(Cap), 1, Cap / 2);
    }

    [Fact]
    public void RecordHit_OutOfRangeSamples_AreClampedToTheCap()
    {
        SpinBudget budget = default;
        budget.RecordHit(long.MaxValue, Cap);
        Assert.Equal(Cap, budget.MeanTicks);
        Assert.Equal(Cap, budget.Next(Cap));
        budget.RecordHit(-1_000_000, Cap);
        Assert.InRange(budget.MeanTicks, 1, Cap);
        Assert.InRange(budget.Next(Cap), 1, Cap);
        // A smaller cap than the one it learned under still bounds the next budget.
        Assert.InRange(budget.Next(Cap / 100), 0, Cap / 100);
    }

    [Fact]
    public void Budget_AnySequence_StaysWithinZeroAndTheCap()
    {
        var random = new Random(12);
        SpinBudget budget = default;
        for (int i = 0; i < 10_000; i++)
        {
            long cap = random.Next(0, 4) == 0 ? random.NextInt64(-10, 100) : Cap;
            long next = budget.Next(cap);
            Assert.InRange(next, 0, Math.Max(cap, 0));
            if (random.Next(3) == 0)
            {
                budget.RecordMiss(cap);
            }
            else
            {
                budget.RecordHit(random.NextInt64(long.MinValue, long.MaxValue), cap);
            }
        }
    }

    private static SpinBudget ParkingAtOnce()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.MaxScore; i++)
        {
            budget.Next(Cap);
            budget.RecordMiss(Cap);
        }
        Assert.True(budget.ParksAtOnce);
        return budget;
    }
}
