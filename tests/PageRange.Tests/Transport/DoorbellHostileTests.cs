using System.Diagnostics;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A peer that flips the doorbell's sequence word and calls <c>FUTEX_WAKE</c> on it in a loop, without ever publishing:
/// a parked waiter must not turn into a spinning one.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class DoorbellHostileTests : IDisposable
{
    private const int SequenceOffset = 0;
    private const int ParkedOffset = 64;
    private const int FlagOffset = 128;

    private readonly SharedRegion _region = SharedRegion.Create("doorbell-hostile", SharedRegion.PageSize);

    public void Dispose() => _region.Dispose();

    [Fact]
    public async Task Wait_PeerFlipsTheSequenceWordForEver_WaiterBacksOffToTimedParks()
    {
        Doorbell victim = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        // The attacker's view of the same words: WakeAll bumps the sequence and wakes everything parked on it.
        Doorbell attacker = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        using var stop = new CancellationTokenSource();
        long flips = 0;
        Task flipping = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                attacker.WakeAll();
                flips++;
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            var ready = new WordEquals(_region, FlagOffset, 1);
            TimeSpan parkTimeout = TimeSpan.FromMilliseconds(100);

            bool result = victim.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, parkTimeout, Doorbell.DeadlineAfter(TimeSpan.FromSeconds(1.5)), default);

            Assert.False(result);
            long parks = victim.Parks;
            // Without the back-off every flip is a wake and a new futex call: tens of thousands in 1.5 s. With it, eight
            // fruitless wakes, then timed parks of 1, 2, 4 ... 100 ms, each followed by one park on the shared word.
            Assert.True(parks < 200, $"{parks} futex waits while the attacker flipped the word {flips} times");
            Assert.True(flips > parks, $"the attacker flipped only {flips} times");
        }
        finally
        {
            await stop.CancelAsync();
            await flipping.WaitAsync(TestTimeouts.Long);
        }
    }

    [Fact]
    public async Task Wait_AfterTheFlippingStops_AnHonestRingWakesTheWaiter()
    {
        Doorbell victim = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        Doorbell producer = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        using var stop = new CancellationTokenSource();
        Task flipping = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                producer.WakeAll();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var ready = new WordEquals(_region, FlagOffset, 1);
        var clock = Stopwatch.StartNew();
        Task<bool> waiting = Task.Factory.StartNew(
            () => victim.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, TimeSpan.FromMilliseconds(100), Doorbell.DeadlineAfter(TestTimeouts.Long), default),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await Task.Delay(TimeSpan.FromMilliseconds(500));
        await stop.CancelAsync();
        await flipping.WaitAsync(TestTimeouts.Long);

        // Publish, then ring as a producer does: the waiter sees it within a park timeout or two.
        Write(_region, FlagOffset, 1);
        producer.Ring();

        Assert.True(await waiting.WaitAsync(TestTimeouts.Long));
        Assert.True(clock.Elapsed < TestTimeouts.Long);
    }

    [Fact]
    public async Task Wait_BackingOff_CancellationEndsTheWaitPromptly()
    {
        Doorbell victim = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        Doorbell attacker = Doorbell.Over(_region, SequenceOffset, ParkedOffset);
        using var stop = new CancellationTokenSource();
        using var cancel = new CancellationTokenSource();
        Task flipping = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                attacker.WakeAll();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            var ready = new WordEquals(_region, FlagOffset, 1);
            // A park timeout far beyond the test's bound: only the cancellation can end the back-off's sleeps.
            Task waiting = Task.Factory.StartNew(
                () => victim.Wait(ref ready, WaitStrategy.Park, TimeSpan.Zero, TimeSpan.FromSeconds(10), long.MaxValue, cancel.Token),
                CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            await Task.Delay(TimeSpan.FromMilliseconds(300));
            var clock = Stopwatch.StartNew();
            await cancel.CancelAsync();

            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TestTimeouts.Long));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the cancellation took {clock.Elapsed}");
        }
        finally
        {
            await stop.CancelAsync();
            await flipping.WaitAsync(TestTimeouts.Long);
        }
    }

    // SAFETY (Read, Write): GetSpan checks the 4 bytes lie inside the mapping, and the offsets are 4-byte aligned.
    private static int Read(SharedRegion region, int offset) =>
        Volatile.Read(ref MemoryMarshal.Cast<byte, int>(region.GetSpan(offset, sizeof(int)))[0]);

    private static void Write(SharedRegion region, int offset, int value) =>
        Volatile.Write(ref MemoryMarshal.Cast<byte, int>(region.GetSpan(offset, sizeof(int)))[0], value);

    private readonly struct WordEquals(SharedRegion region, int offset, int value) : IWaitCondition
    {
        public bool IsReady => Read(region, offset) == value;

        public bool PollReady() => IsReady;
    }
}
