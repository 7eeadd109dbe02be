using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>How <see cref="Doorbell.Wait"/> feeds and uses its spin budget (conditions driven by check counts, not by time).</summary>
public sealed class DoorbellSpinBudgetTests : IDisposable
{
    private const int SequenceOffset = 0;
    private const int ParkedOffset = 64;

    private static readonly TimeSpan s_cap = TimeSpan.FromMilliseconds(1);

    private readonly SharedRegion _region = SharedRegion.Create("doorbell-budget-test", SharedRegion.PageSize);

    public void Dispose() => _region.Dispose();

    [Fact]
    public void Wait_ReadyAtOnce_LearnsNothing()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        var ready = new ReadyAfterChecks(new Counter(), 0);
        Assert.True(Wait(bell, ref ready, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        Assert.Equal(0, bell.SpinBudget.SlowScore);
        Assert.False(bell.SpinBudget.ParksAtOnce);
    }

    [Fact]
    public void Wait_ReadyWhileSpinning_NeitherParksNorCountsASlowWait()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        var ready = new ReadyAfterChecks(new Counter(), 3);
        Assert.True(Wait(bell, ref ready, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        Assert.Equal(0, bell.SpinBudget.SlowScore);
        Assert.Equal(0, bell.Parks);
    }

    [Fact]
    public void Wait_PeerFarSlowerThanTheSpin_ParksAtOnceAfterTheThreshold_ThenSpinsAgainWhenWaitsAreShort()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        for (int i = 0; i < SpinBudget.ParkThreshold; i++)
        {
            Assert.False(bell.SpinBudget.ParksAtOnce);
            var never = new ReadyAfterChecks(new Counter(), int.MaxValue);
            // 100 ms, far beyond the slow bound (8 caps of 1 ms): each wait spins the cap, parks and times out.
            Assert.False(Wait(bell, ref never, WaitStrategy.SpinThenPark, TimeSpan.FromMilliseconds(100)));
        }
        Assert.True(bell.SpinBudget.ParksAtOnce);

        // Parking at once: the condition is checked a few times around the park, not hundreds of times in a spin.
        var counter = new Counter();
        var stillNever = new ReadyAfterChecks(counter, int.MaxValue);
        long parksBefore = bell.Parks;
        Assert.False(Wait(bell, ref stillNever, WaitStrategy.SpinThenPark, TimeSpan.FromMilliseconds(5)));
        Assert.True(bell.Parks > parksBefore);
        Assert.InRange(counter.Checks, 1, 20);

        // The peer answers quickly again: waits that end around the park are short, and spinning comes back.
        for (int i = 0; i < SpinBudget.MaxScore && bell.SpinBudget.ParksAtOnce; i++)
        {
            var soon = new ReadyAfterChecks(new Counter(), 1);
            Assert.True(Wait(bell, ref soon, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        }
        Assert.False(bell.SpinBudget.ParksAtOnce);
    }

    [Fact]
    public void Wait_AnsweredWithinThirtyOneLooks_IsAnsweredWhilePollingAsBusySpinDoes()
    {
        // 31 looks with a pause between them and no clock read (the pause-only spin reads it every 32nd look), so this
        // holds whatever the machine's speed or a preemption: the answer is found before SpinOnce's first round.
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        // Recent waits that ended quickly (a few looks: well within the pause-only 2 µs, unless preempted) come first.
        for (int i = 0; i < 4; i++)
        {
            var quick = new ReadyAfterChecks(new Counter(), 2);
            Assert.True(Wait(bell, ref quick, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        }
        Assert.True(bell.QuickWaits >= Doorbell.QuickWaitsBeforePausing, $"only {bell.QuickWaits} quick waits");
        long answeredBefore = bell.AnsweredWhilePausing;
        var counter = new Counter();
        var soon = new ReadyAfterChecks(counter, 30);
        Assert.True(Wait(bell, ref soon, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        Assert.Equal(31, counter.Checks);
        Assert.Equal(answeredBefore + 1, bell.AnsweredWhilePausing);
        Assert.Equal(0, bell.SpunPastPauses);
        Assert.Equal(0, bell.Parks);
    }

    [Fact]
    public void Wait_AfterWaitsThatTookLongerThanThePauseOnlySpin_DoesNotPollAsBusySpinFirst()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        for (int i = 0; i < 4; i++)
        {
            var never = new ReadyAfterChecks(new Counter(), int.MaxValue);
            // 3 ms each: far longer than the pause-only 2 µs (an answer that comes through a thread's wake-up, say).
            Assert.False(Wait(bell, ref never, WaitStrategy.SpinThenPark, TimeSpan.FromMilliseconds(3)));
        }
        Assert.Equal(0, bell.QuickWaits);
        var soon = new ReadyAfterChecks(new Counter(), 30);
        Assert.True(Wait(bell, ref soon, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        // Answered in SpinOnce's rounds, which yield now and then, not in pauses that keep the core.
        Assert.Equal(0, bell.AnsweredWhilePausing);
    }

    [Fact]
    public void Wait_NotAnsweredWithinThePauseOnlySpin_SpinsOnWithSpinOnceThenParks()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        for (int i = 0; i < 4; i++)
        {
            var quick = new ReadyAfterChecks(new Counter(), 2);
            Assert.True(Wait(bell, ref quick, WaitStrategy.SpinThenPark, TimeSpan.FromSeconds(10)));
        }
        long pastBefore = bell.SpunPastPauses;
        var counter = new Counter();
        var never = new ReadyAfterChecks(counter, int.MaxValue);
        // 20 ms: past the pause-only 2 µs, past the 1 ms cap, into a park that times out.
        Assert.False(Wait(bell, ref never, WaitStrategy.SpinThenPark, TimeSpan.FromMilliseconds(20)));
        Assert.Equal(pastBefore + 1, bell.SpunPastPauses);
        Assert.True(bell.Parks > 0);
        Assert.True(counter.Checks > 32, $"only {counter.Checks} looks: the pause-only spin reads the clock every 32nd");
    }

    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.Park)]
    public void Wait_OtherStrategies_LearnNothing(WaitStrategy strategy)
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        for (int i = 0; i < SpinBudget.ParkThreshold; i++)
        {
            var never = new ReadyAfterChecks(new Counter(), int.MaxValue);
            Assert.False(Wait(bell, ref never, strategy, TimeSpan.FromMilliseconds(2)));
            var soon = new ReadyAfterChecks(new Counter(), 2);
            Assert.True(Wait(bell, ref soon, strategy, TimeSpan.FromSeconds(10)));
        }
        Assert.Equal(0, bell.SpinBudget.SlowScore);
        Assert.False(bell.SpinBudget.ParksAtOnce);
    }

    private static bool Wait(Doorbell bell, ref ReadyAfterChecks condition, WaitStrategy strategy, TimeSpan timeout) =>
        bell.Wait(ref condition, strategy, s_cap, TimeSpan.FromMilliseconds(2), Doorbell.DeadlineAfter(timeout), default);

    private sealed class Counter
    {
        public int Checks;
    }

    /// <summary>Ready from the (<paramref name="after"/> + 1)-th check on: how a peer answering "soon" looks, without a clock.</summary>
    private readonly struct ReadyAfterChecks(Counter counter, int after) : IWaitCondition
    {
        public bool IsReady => ++counter.Checks > after;

        public bool PollReady() => IsReady;
    }
}
