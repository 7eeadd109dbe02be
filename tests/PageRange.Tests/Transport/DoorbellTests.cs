using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

public sealed class DoorbellTests : IDisposable
{
    private const int SequenceOffset = 0;
    private const int ParkedOffset = 64;
    private const int PingSequenceOffset = 128;
    private const int PingParkedOffset = 192;
    private const int FlagOffset = 256;
    private const int PongOffset = 320;

    /// <summary>Long enough that a waiter woken in time was woken by the futex, not by the backstop.</summary>
    private static readonly TimeSpan s_noBackstop = TimeSpan.FromSeconds(120);

    private readonly SharedRegion _region = SharedRegion.Create("doorbell-test", SharedRegion.PageSize);

    public void Dispose() => _region.Dispose();

    [Fact]
    public void Ring_NobodyParked_IssuesNoWake()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        Assert.False(bell.Ring());
        Assert.Equal(0, Read(_region, SequenceOffset));
    }

    [Fact]
    public void Wait_ConditionAlreadyTrue_ReturnsAtOnceWithoutParking()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        Write(_region, FlagOffset, 1);
        var ready = new WordEquals(_region, FlagOffset, 1);
        Assert.True(bell.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(TimeSpan.Zero), default));
    }

    [Fact]
    public void Wait_ParkAndAPollThatLeavesTheLookOut_ReturnsAtOnceWithoutTheParksFence()
    {
        // A poll may answer no without looking (PollReady); a park's first look is exact, so a ready condition never
        // costs the park's fence (with the park barrier, a system call).
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset, parkWithBarrier: true);
        var ready = new ReadyButPollSaysNo();
        Assert.True(bell.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Short), default));
        Assert.Equal((0, 0, 0), (bell.Parks, bell.ParkBarriers, bell.ParkBarrierFailures));
    }

    [Theory]
    [InlineData(WaitStrategy.BusySpin)]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public void Wait_ConditionNeverTrue_ReturnsFalseAfterTheDeadline(WaitStrategy strategy)
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        var ready = new WordEquals(_region, FlagOffset, 1);
        var watch = Stopwatch.StartNew();
        bool result = bell.Wait(ref ready, strategy, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10),
            Doorbell.DeadlineAfter(TimeSpan.FromMilliseconds(50)), default);
        Assert.False(result);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(45), $"returned after {watch.Elapsed}");
        Assert.Equal(0, Read(_region, ParkedOffset));
    }

    [Fact]
    public void Ring_ParkedWaiterOnAnotherThread_IsWokenByTheFutex() =>
        ParkedWaiterIsWoken(waiterRegion: _region, ringerRegion: _region);

    [Fact]
    public void Ring_ParkedWaiterOnAnotherMappingOfTheMemfd_IsWokenByTheFutex()
    {
        // Two mappings of one memfd, as the two processes have: a non-private futex keys on the file page, not the address.
        using SharedRegion peerView = SharedRegion.Open(Interop.Dup(_region.Handle), _region.Size, writableBytes: _region.Size);
        Assert.NotEqual(_region.BaseAddress, peerView.BaseAddress);
        ParkedWaiterIsWoken(waiterRegion: _region, ringerRegion: peerView);
    }

    private static void ParkedWaiterIsWoken(SharedRegion waiterRegion, SharedRegion ringerRegion)
    {
        Doorbell waiterBell = Doorbell.Over(waiterRegion, SequenceOffset, ParkedOffset);
        Doorbell ringerBell = Doorbell.Over(ringerRegion, SequenceOffset, ParkedOffset);
        var watch = Stopwatch.StartNew();
        Task<bool> waiter = Task.Factory.StartNew(
            () =>
            {
                var ready = new WordEquals(waiterRegion, FlagOffset, 1);
                return waiterBell.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(s_noBackstop), default);
            },
            TaskCreationOptions.LongRunning);

        WaitUntil(() => Read(ringerRegion, ParkedOffset) == 1, "the waiter announced it is parked");
        Write(ringerRegion, FlagOffset, 1);
        Assert.True(ringerBell.Ring());
        Assert.True(waiter.Wait(TestTimeouts.Long));
        Assert.True(waiter.Result);
        Assert.True(watch.Elapsed < TestTimeouts.Long, "woken by the wake, not by the park timeout");
        Assert.Equal(1, Read(ringerRegion, SequenceOffset));
        Assert.Equal(0, Read(ringerRegion, ParkedOffset));
    }

    [Fact]
    public void Wait_TokenCancelledWhileParked_ThrowsPromptly()
    {
        Doorbell bell = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        using var cts = new CancellationTokenSource();
        Task waiter = Task.Factory.StartNew(
            () =>
            {
                var ready = new WordEquals(_region, FlagOffset, 1);
                bell.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, s_noBackstop, Doorbell.DeadlineAfter(s_noBackstop), cts.Token);
            },
            TaskCreationOptions.LongRunning);
        WaitUntil(() => Read(_region, ParkedOffset) == 1, "the waiter announced it is parked");
        cts.Cancel();
        AggregateException error = Assert.Throws<AggregateException>(() => waiter.Wait(TestTimeouts.Long));
        Assert.IsAssignableFrom<OperationCanceledException>(error.InnerException);
    }

    [Theory]
    [InlineData(WaitStrategy.Park)]
    [InlineData(WaitStrategy.SpinThenPark)]
    public async Task PingPong_TwoThreadsTwoMappings_NoWakeIsLost(WaitStrategy strategy)
    {
        // A lost wake would stall a hand-off until the (huge) park timeout and fail the bound below.
        const int rounds = 20_000;
        using SharedRegion peerView = SharedRegion.Open(Interop.Dup(_region.Handle), _region.Size, writableBytes: _region.Size);
        Doorbell pingBellA = Doorbell.Over(_region, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellA = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        Doorbell pingBellB = Doorbell.Over(peerView, PingSequenceOffset, PingParkedOffset);
        Doorbell pongBellB = Doorbell.Over(peerView, SequenceOffset, ParkedOffset);
        TimeSpan spin = TimeSpan.FromMicroseconds(5);

        Task ponger = Task.Factory.StartNew(
            () =>
            {
                for (int i = 1; i <= rounds; i++)
                {
                    var ping = new WordEquals(peerView, FlagOffset, i);
                    Assert.True(pingBellB.Wait(ref ping, strategy, spin, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Long), default));
                    Write(peerView, PongOffset, i);
                    pongBellB.Ring();
                }
            },
            TaskCreationOptions.LongRunning);

        var watch = Stopwatch.StartNew();
        for (int i = 1; i <= rounds; i++)
        {
            Write(_region, FlagOffset, i);
            pingBellA.Ring();
            var pong = new WordEquals(_region, PongOffset, i);
            Assert.True(pongBellA.Wait(ref pong, strategy, spin, s_noBackstop, Doorbell.DeadlineAfter(TestTimeouts.Long), default));
        }
        await ponger.WaitAsync(TestTimeouts.Long);
        Assert.True(watch.Elapsed < TestTimeouts.Long);
    }

    private static void WaitUntil(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < TestTimeouts.Short, $"timed out waiting until {what}");
            Thread.Yield();
        }
    }

    private static int Read(SharedRegion region, int offset) =>
        Volatile.Read(ref Unsafe.As<byte, int>(ref MemoryMarshal.GetReference(region.GetSpan(offset, 4))));

    private static void Write(SharedRegion region, int offset, int value) =>
        Volatile.Write(ref Unsafe.As<byte, int>(ref MemoryMarshal.GetReference(region.GetSpan(offset, 4))), value);

    private readonly struct WordEquals(SharedRegion region, int offset, int value) : IWaitCondition
    {
        public bool IsReady => Read(region, offset) == value;

        public bool PollReady() => IsReady;
    }

    /// <summary>Ready, but its poll leaves the look out: what a paced look answers.</summary>
    private readonly struct ReadyButPollSaysNo : IWaitCondition
    {
        public bool IsReady => true;

        public bool PollReady() => false;
    }
}
