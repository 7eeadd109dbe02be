using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>When <see cref="WaitStrategy.SpinThenPark"/> spins and when it parks at once, fed deterministic wait times (no clock involved).</summary>
public sealed class SpinBudgetTests
{
    // Abstract ticks: the budget only compares them with multiples of the cap.
    private const long Cap = 1_000_000;
    private const long Slow = (Cap * SpinBudget.SlowWaitFactor) + 1;

    // A wait that outlasts the cap but is not slow: a parked client's wake-up, say.
    private const long Late = Cap * 3;

    [Fact]
    public void Next_NothingLearned_SpinsTheCap()
    {
        SpinBudget budget = default;
        Assert.Equal(Cap, budget.Next(Cap, afterAbsence: false));
        Assert.False(budget.ParksAtOnce);
        Assert.False(budget.IsAfterAbsence(long.MaxValue, Cap));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Next_CapZeroOrNegative_NeverSpinsAndLearnsNothing(long cap)
    {
        SpinBudget budget = default;
        Assert.Equal(0, budget.Next(cap, afterAbsence: true));
        budget.Record(1, long.MaxValue, cap, afterAbsence: true, spun: true, answeredWhileSpinning: false);
        Assert.Equal(0, budget.SlowScore);
        Assert.Equal(0, budget.AbsenceScore);
        Assert.False(budget.IsAfterAbsence(long.MaxValue, cap));
        Assert.Equal(0, budget.Next(cap, afterAbsence: false));
    }

    [Fact]
    public void Next_FastPeer_SpinsTheWholeCap()
    {
        // A spin ends when the answer comes: a shorter one would save nothing while the peer is fast, and would make both
        // sides park (see the remarks of SpinBudget).
        var waits = new Waits();
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(Cap, waits.Wait(Cap / 50));
        }
        Assert.False(waits.Budget.ParksAtOnce);
    }

    [Fact]
    public void Next_WaitsOfAFewCaps_KeepSpinning()
    {
        // Waits that end a few caps in (a park's wake-up included) are what two parked sides answering each other at once
        // look like: they must not read as a slow peer, and with no absence between them the absence score is not read.
        var waits = new Waits();
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(Cap, waits.Wait(Cap * SpinBudget.SlowWaitFactor));
        }
        Assert.Equal(0, waits.Budget.AbsenceScore);
    }

    [Fact]
    public void Next_SlowPeer_ParksAtOnceFromTheThreshold()
    {
        var waits = new Waits();
        for (int i = 0; i < SpinBudget.ParkThreshold; i++)
        {
            Assert.Equal(Cap, waits.Wait(Slow));
        }
        Assert.True(waits.Budget.ParksAtOnce);
        Assert.Equal(0, waits.Budget.Next(Cap, afterAbsence: false));
    }

    [Fact]
    public void Next_SlowPeerStaysSlow_KeepsParkingWithoutProbing()
    {
        Waits waits = ParkingAtOnce();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(0, waits.Wait(Slow * 10));
        }
        Assert.Equal(SpinBudget.MaxScore, waits.Budget.SlowScore);
    }

    [Fact]
    public void Next_PeerSpeedsUpWhileParkingAtOnce_SpinsAgainAfterTwoShortWaits()
    {
        // A long slow spell (the score at its cap) is left in a couple of waits: the parked waits themselves are short.
        Waits waits = ParkingAtOnce();
        Assert.Equal(0, waits.Wait(Late));
        Assert.True(waits.Budget.ParksAtOnce);
        Assert.Equal(0, waits.Wait(Late));
        Assert.False(waits.Budget.ParksAtOnce);
        Assert.Equal(Cap, waits.Wait(Cap / 10));
    }

    [Fact]
    public void Next_MostlyFastPeerWithRareSlowWaits_KeepsSpinning()
    {
        var waits = new Waits();
        for (int i = 0; i < 1000; i++)
        {
            waits.Wait(i % 3 == 0 ? Slow : Cap / 10);
            Assert.False(waits.Budget.ParksAtOnce);
        }
    }

    [Fact]
    public void Record_HugeCap_DoesNotOverflowTheSlowBound()
    {
        SpinBudget budget = default;
        long cap = long.MaxValue / 2;
        for (int i = 0; i < SpinBudget.MaxScore; i++)
        {
            budget.Record(0, long.MaxValue, cap, afterAbsence: false, spun: true, answeredWhileSpinning: false);
        }
        Assert.False(budget.ParksAtOnce);
        Assert.False(budget.IsAfterAbsence(long.MaxValue, cap));
        Assert.Equal(cap, budget.Next(cap, afterAbsence: true));
    }

    [Fact]
    public void IsAfterAbsence_ComparesTheTimeSinceTheLastWaitEndedWithTheSlowBound()
    {
        SpinBudget budget = default;
        budget.Record(100, 200, Cap, afterAbsence: false, spun: true, answeredWhileSpinning: true);
        Assert.False(budget.IsAfterAbsence(200 + (Cap * SpinBudget.SlowWaitFactor), Cap));
        Assert.True(budget.IsAfterAbsence(200 + Slow, Cap));
    }

    [Fact]
    public void Next_AfterAbsencesThePeerAnswersLate_ParksAtOnceAfterAbsencesOnly()
    {
        // A server whose handler takes a millisecond: its client parked meanwhile and calls again only after its wake-up,
        // later than the cap. The waits are short (no slow score), but every spin after an absence is lost.
        var waits = new Waits();
        waits.Wait(Cap / 10);
        for (int i = 0; i < SpinBudget.ParkThreshold; i++)
        {
            Assert.False(waits.Budget.ParksAtOnceAfterAbsence);
            Assert.Equal(Cap, waits.Wait(Late, absence: Slow));
        }
        Assert.True(waits.Budget.ParksAtOnceAfterAbsence);
        Assert.Equal(0, waits.Wait(Late, absence: Slow));
        Assert.Equal(0, waits.Budget.SlowScore);
        Assert.False(waits.Budget.ParksAtOnce);

        // The same side's waits after no absence (a burst of fast calls) spin as before and leave the absence score alone.
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(Cap, waits.Wait(Late));
        }
        Assert.True(waits.Budget.ParksAtOnceAfterAbsence);
    }

    [Fact]
    public void Next_ParkingAfterAbsences_ProbesOnceInEveryProbeInterval()
    {
        Waits waits = ParkingAfterAbsences();
        int spins = 0;
        const int Intervals = 10;
        for (int i = 0; i < SpinBudget.ProbeInterval * Intervals; i++)
        {
            if (waits.Wait(Late, absence: Slow) > 0)
            {
                spins++;
            }
        }
        Assert.Equal(Intervals, spins);
        Assert.Equal(SpinBudget.MaxScore, waits.Budget.AbsenceScore);
    }

    [Fact]
    public void Next_ProbesAnsweredWithinTheSpin_SpinAfterAbsencesAgain()
    {
        Waits waits = ParkingAfterAbsences();
        int waitsUntilSpinning = 0;
        while (waits.Budget.ParksAtOnceAfterAbsence)
        {
            waits.Wait(Cap / 10, absence: Slow);
            waitsUntilSpinning++;
            Assert.InRange(waitsUntilSpinning, 1, SpinBudget.ProbeInterval * 3);
        }
        for (int i = 0; i < 64; i++)
        {
            Assert.Equal(Cap, waits.Wait(Cap / 10, absence: Slow));
        }
    }

    [Fact]
    public void Next_AfterAbsencesThePeerAnswersWithinTheSpin_KeepsSpinning()
    {
        // A server whose client busy-spins for the reply: the next call comes at once after a long handler.
        var waits = new Waits();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(Cap, waits.Wait(i % 3 == 0 ? Late : Cap / 10, absence: Slow));
        }
        Assert.False(waits.Budget.ParksAtOnceAfterAbsence);
    }

    private static Waits ParkingAtOnce()
    {
        var waits = new Waits();
        for (int i = 0; i < SpinBudget.MaxScore * 2; i++)
        {
            waits.Wait(Slow);
        }
        Assert.Equal(SpinBudget.MaxScore, waits.Budget.SlowScore);
        return waits;
    }

    private static Waits ParkingAfterAbsences()
    {
        var waits = new Waits();
        // The first wait ever has no previous end to be absent from.
        waits.Wait(Cap / 10);
        for (int i = 0; i < SpinBudget.ParkThreshold; i++)
        {
            waits.Wait(Late, absence: Slow);
        }
        Assert.True(waits.Budget.ParksAtOnceAfterAbsence);
        return waits;
    }

    /// <summary>Waits on a budget along a made-up clock, the way the doorbell calls it.</summary>
    private sealed class Waits
    {
        public SpinBudget Budget;

        private long _now = 1;

        /// <summary>A wait that the peer answers <paramref name="waited"/> after it begins, <paramref name="absence"/> after the last one ended.</summary>
        /// <returns>What the wait spun: the cap or 0.</returns>
        public long Wait(long waited, long absence = 1)
        {
            long start = _now + absence;
            bool afterAbsence = Budget.IsAfterAbsence(start, Cap);
            long spin = Budget.Next(Cap, afterAbsence);
            _now = start + waited;
            Budget.Record(start, _now, Cap, afterAbsence, spin > 0, spin > 0 && waited <= spin);
            return spin;
        }
    }
}
