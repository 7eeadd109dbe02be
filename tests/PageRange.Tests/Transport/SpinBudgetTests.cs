using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>When <see cref="WaitStrategy.SpinThenPark"/> spins and when it parks at once, fed deterministic wait times (no clock involved).</summary>
public sealed class SpinBudgetTests
{
    // Abstract ticks: the budget only compares them with multiples of the cap.
    private const long Cap = 1_000_000;
    private const long Slow = (Cap * SpinBudget.SlowWaitFactor) + 1;

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
    public void Next_CapZeroOrNegative_NeverSpinsAndLearnsNothing(long cap)
    {
        SpinBudget budget = default;
        Assert.Equal(0, budget.Next(cap));
        budget.Record(long.MaxValue, cap);
        Assert.Equal(0, budget.SlowScore);
        Assert.Equal(0, budget.Next(cap));
    }

    [Fact]
    public void Next_FastPeer_SpinsTheWholeCap()
    {
        // A spin ends when the answer comes: a shorter one would save nothing while the peer is fast, and would make both
        // sides park (see the remarks of SpinBudget).
        SpinBudget budget = default;
        for (int i = 0; i < 64; i++)
        {
            budget.Record(Cap / 50, Cap);
        }
        Assert.Equal(Cap, budget.Next(Cap));
        Assert.False(budget.ParksAtOnce);
    }

    [Fact]
    public void Next_WaitsOfAFewCaps_KeepSpinning()
    {
        // Waits that end a few caps in (a park's wake-up included) are what two parked sides answering each other at once
        // look like: they must not read as a slow peer.
        SpinBudget budget = default;
        for (int i = 0; i < 64; i++)
        {
            budget.Record(Cap * SpinBudget.SlowWaitFactor, Cap);
        }
        Assert.Equal(Cap, budget.Next(Cap));
    }

    [Fact]
    public void Next_SlowPeer_ParksAtOnceFromTheThreshold()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.ParkThreshold - 1; i++)
        {
            budget.Record(Slow, Cap);
            Assert.Equal(Cap, budget.Next(Cap));
        }
        budget.Record(Slow, Cap);
        Assert.True(budget.ParksAtOnce);
        Assert.Equal(0, budget.Next(Cap));
    }

    [Fact]
    public void Next_SlowPeerStaysSlow_KeepsParkingWithoutProbing()
    {
        SpinBudget budget = ParkingAtOnce();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(0, budget.Next(Cap));
            budget.Record(Slow * 10, Cap);
        }
        Assert.Equal(SpinBudget.MaxScore, budget.SlowScore);
    }

    [Fact]
    public void Next_PeerSpeedsUpWhileParkingAtOnce_SpinsAgainAfterTwoShortWaits()
    {
        // A long slow spell (the score at its cap) is left in a couple of waits: the parked waits themselves are short.
        SpinBudget budget = ParkingAtOnce();
        budget.Record(Cap * 3, Cap);
        Assert.True(budget.ParksAtOnce);
        budget.Record(Cap * 3, Cap);
        Assert.False(budget.ParksAtOnce);
        Assert.Equal(Cap, budget.Next(Cap));
    }

    [Fact]
    public void Next_MostlyFastPeerWithRareSlowWaits_KeepsSpinning()
    {
        SpinBudget budget = default;
        for (int i = 0; i < 1000; i++)
        {
            budget.Record(i % 3 == 0 ? Slow : Cap / 10, Cap);
            Assert.False(budget.ParksAtOnce);
        }
    }

    [Fact]
    public void Record_HugeCap_DoesNotOverflowTheSlowBound()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.MaxScore; i++)
        {
            budget.Record(long.MaxValue, long.MaxValue / 2);
        }
        Assert.False(budget.ParksAtOnce);
        Assert.Equal(long.MaxValue / 2, budget.Next(long.MaxValue / 2));
    }

    private static SpinBudget ParkingAtOnce()
    {
        SpinBudget budget = default;
        for (int i = 0; i < SpinBudget.MaxScore * 2; i++)
        {
            budget.Record(Slow, Cap);
        }
        Assert.Equal(SpinBudget.MaxScore, budget.SlowScore);
        return budget;
    }
}
