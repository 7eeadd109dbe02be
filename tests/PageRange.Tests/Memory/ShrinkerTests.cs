using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Threading;
using PageRange.Threading;

namespace PageRange.Tests.Memory;

/// <summary>The seed's shrinker protocol: LRU order, try-locks that skip on contention, idle reclaim, and Dispose racing it.</summary>
public sealed class ShrinkerTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void Scan_ManyRanges_ReclaimsOldestFirstAndCountIsLruLength()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("shrinker", 8 * s_page);
        using var a = new ShrinkablePageRange(region, 0, 4, shrinker);
        using var b = new ShrinkablePageRange(region, 4 * s_page, 4, shrinker);
        a.UseRange(0, 4);
        b.UseRange(0, 4);
        b.StopUsingRange(0, 2);
        a.StopUsingRange(2, 4);

        Assert.Equal(4, shrinker.Count());
        Dictionary<ShrinkablePageRange, int> perRange = shrinker.WalkLru();
        Assert.Equal(2, perRange[a]);
        Assert.Equal(2, perRange[b]);

        // b's pages were queued first, so they go first.
        Assert.Equal(2, shrinker.Scan(2));
        Assert.Equal(new PageRangeStats(2, 0, 2, 4, 6L * s_page), b.GetStats() with { ResidentBytes = region.ResidentBytes });
        Assert.Equal(PageState.Available, a.GetPageState(2));
        Assert.Equal(2, shrinker.Count());
        Assert.Equal(6 * s_page, region.ResidentBytes);
    }

    [Fact]
    public void Scan_NegativeCount_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new Shrinker().Scan(-1));

    [Fact]
    public void Scan_MmLockHeldByAnotherThread_SkipsAndCountsSkipped() =>
        AssertSkipsWhileHeld(range => range.MmLock);

    [Fact]
    public void Scan_RangeLockHeldByAnotherThread_SkipsAndCountsSkipped() =>
        AssertSkipsWhileHeld(range => range.RangeLock);

    /// <summary>
    /// Runs <paramref name="test"/> on a region of two ranges of one shrinker whose pages wait on its LRU: three of the
    /// busy range's, one of the idle range's.
    /// </summary>
    private static void WithBusyAndIdleRanges(string name, Action<Shrinker, SharedRegion, ShrinkablePageRange> test)
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create(name, 6 * s_page);
        using var busy = new ShrinkablePageRange(region, 0, 3, shrinker);
        using var idle = new ShrinkablePageRange(region, 3 * s_page, 3, shrinker);
        busy.UseRange(0, 3);
        busy.StopUsingRange(0, 3);
        idle.UseRange(0, 1);
        idle.StopUsingRange(0, 1);
        test(shrinker, region, busy);
    }

    private static void AssertSkipsWhileHeld(Func<ShrinkablePageRange, ThinLock> which) =>
        WithBusyAndIdleRanges("skip", (shrinker, region, busy) => AssertSkipsWhileHeld(which, shrinker, region, busy));

    private static void AssertSkipsWhileHeld(Func<ShrinkablePageRange, ThinLock> which, Shrinker shrinker, SharedRegion region, ShrinkablePageRange busy)
    {
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            ThinLock gate = which(busy);
            gate.Enter();
            try
            {
                held.Set();
                release.Wait(TestTimeouts.Long);
            }
            finally
            {
                gate.Exit();
            }
        });
        holder.Start();
        try
        {
            Assert.True(held.Wait(TestTimeouts.Short));
            // The busy range's three pages are skipped (each looked at once), the idle range's page is freed.
            Assert.Equal(1, shrinker.Scan(100));
            Assert.Equal(4, shrinker.PagesScanned);
            Assert.Equal(3, shrinker.PagesSkipped);
            Assert.Equal(1, shrinker.PagesFreed);
            Assert.Equal(3, shrinker.Count());
            Assert.Equal(3 * s_page, region.ResidentBytes);
        }
        finally
        {
            release.Set();
            Assert.True(holder.Join(TestTimeouts.Short));
        }

        // Skipped pages stay Available and are reclaimed once the lock is free.
        Assert.Equal(3, shrinker.Scan(100));
        Assert.Equal(0, region.ResidentBytes);
        Assert.Equal(3, shrinker.PagesSkipped);
    }

    [Fact]
    public void Scan_MmLockHeldByTheScanningThread_SkipsAsForAnotherThread() =>
        AssertSkipsWhileHeldByTheScanningThread(range => range.MmLock);

    [Fact]
    public void Scan_RangeLockHeldByTheScanningThread_SkipsAsForAnotherThread() =>
        AssertSkipsWhileHeldByTheScanningThread(range => range.RangeLock);

    /// <summary>
    /// The seed's try_lock fails on a mutex its own thread holds: a scan from inside a range's section must not free that
    /// range's pages under it (the ThinLock's re-entrant TryEnter let it, and punched them).
    /// </summary>
    private static void AssertSkipsWhileHeldByTheScanningThread(Func<ShrinkablePageRange, ThinLock> which) =>
        WithBusyAndIdleRanges("skip-own", (shrinker, region, busy) => AssertSkipsWhileHeldByTheScanningThread(which, shrinker, region, busy));

    private static void AssertSkipsWhileHeldByTheScanningThread(Func<ShrinkablePageRange, ThinLock> which, Shrinker shrinker, SharedRegion region, ShrinkablePageRange busy)
    {
        ThinLock gate = which(busy);
        gate.Enter();
        try
        {
            Assert.Equal(1, shrinker.Scan(100));
            Assert.Equal(3, shrinker.PagesSkipped);
            Assert.Equal(3, shrinker.Count());
            Assert.Equal(3 * s_page, region.ResidentBytes);
        }
        finally
        {
            gate.Exit();
        }
        // The scan left the lock as it found it: held once, released by that one exit.
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.True(ThinLockThreads.TryEnterOnAnotherThread(gate));
        Assert.Equal(3, shrinker.Scan(100));
        Assert.Equal(0, region.ResidentBytes);
    }

    [Fact]
    public void Scan_SkippedPages_RotateBehindOthers()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("rotate", 4 * s_page);
        using var first = new ShrinkablePageRange(region, 0, 1, shrinker);
        using var second = new ShrinkablePageRange(region, s_page, 1, shrinker);
        first.UseRange(0, 1);
        second.UseRange(0, 1);
        first.StopUsingRange(0, 1);
        second.StopUsingRange(0, 1);

        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var holder = new Thread(() =>
        {
            first.MmLock.Enter();
            held.Set();
            release.Wait(TestTimeouts.Long);
            first.MmLock.Exit();
        });
        holder.Start();
        Assert.True(held.Wait(TestTimeouts.Short));
        // Scan(1) looks only at the head: the busy page, which it skips and rotates to the tail.
        Assert.Equal(0, shrinker.Scan(1));
        release.Set();
        Assert.True(holder.Join(TestTimeouts.Short));
        // Now the other range's page is the oldest.
        Assert.Equal(1, shrinker.Scan(1));
        Assert.Equal(PageState.Free, second.GetPageState(0));
        Assert.Equal(PageState.Available, first.GetPageState(0));
    }

    [Fact]
    public void ScanIdle_ReclaimsOnlyPagesIdleLongEnough()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("idle", 4 * s_page);
        using var range = new ShrinkablePageRange(region, 0, 4, shrinker);
        range.UseRange(0, 4);
        range.StopUsingRange(0, 2);
        long queuedAt = Environment.TickCount64;
        // Waiting for the clock is the point of the test, not a cover for a race.
        Assert.True(SpinWait.SpinUntil(() => Environment.TickCount64 >= queuedAt + 800, TestTimeouts.Short));
        range.StopUsingRange(2, 4);

        Assert.Equal(0, shrinker.ScanIdle(TimeSpan.FromHours(1)));
        Assert.Equal(2, shrinker.ScanIdle(TimeSpan.FromMilliseconds(400)));
        Assert.Equal(PageState.Free, range.GetPageState(0));
        Assert.Equal(PageState.Available, range.GetPageState(2));
        Assert.Equal(2, shrinker.ScanIdle(TimeSpan.Zero));
        Assert.Equal(0, region.ResidentBytes);
        Assert.Throws<ArgumentOutOfRangeException>(() => shrinker.ScanIdle(TimeSpan.FromSeconds(-1)));
    }

    [Fact]
    public async Task ScanIdle_APageSkippedOnce_KeepsItsIdleAge()
    {
        // A skip (its range busy at that instant) re-stamped the page, so a page idle for ten minutes waited a whole
        // idle age again, and again at each skip (found by review).
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("idle-skip", 4 * s_page);
        using var busy = new ShrinkablePageRange(region, 0, 2, shrinker);
        using var other = new ShrinkablePageRange(region, 2 * s_page, 2, shrinker);
        busy.UseRange(0, 1);
        busy.StopUsingRange(0, 1);
        long queuedAt = Environment.TickCount64;
        // Waiting for the clock is the point of the test, not a cover for a race.
        Assert.True(SpinWait.SpinUntil(() => Environment.TickCount64 >= queuedAt + 800, TestTimeouts.Short));

        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        Task holder = Task.Factory.StartNew(() =>
        {
            busy.MmLock.Enter();
            held.Set();
            release.Wait(TestTimeouts.Long);
            busy.MmLock.Exit();
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(held.Wait(TestTimeouts.Long));
        Assert.Equal(0, shrinker.Scan(1));
        Assert.Equal(1, shrinker.PagesSkipped);
        release.Set();
        await holder.WaitAsync(TestTimeouts.Long);
        other.UseRange(0, 1);
        other.StopUsingRange(0, 1);

        // Idle for 800 ms or more, skipped a moment ago: an idle age of 400 ms takes it (and not the page just queued).
        Assert.Equal(1, shrinker.ScanIdle(TimeSpan.FromMilliseconds(400)));
        Assert.Equal(PageState.Free, busy.GetPageState(0));
        Assert.Equal(PageState.Available, other.GetPageState(0));
    }

    [Fact]
    public async Task UseRange_OfAPageBeingPunched_WaitsForThePunch_ThenThePageIsBackedAndKeepsItsBytes()
    {
        // The mm lock's first purpose (the seed's use_page_slow takes it): a use of a page the shrinker took must not
        // back it while the punch is still to come, or the punch would zero a page a live buffer now covers.
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("punch-vs-use", 4 * s_page);
        using var range = new ShrinkablePageRange(region, 0, 4, shrinker);
        range.UseRange(0, 1);
        range.StopUsingRange(0, 1);
        using var punching = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        region.PunchFaultInjector = _ =>
        {
            punching.Set();
            Assert.True(release.Wait(TestTimeouts.Long));
            return false;
        };
        Task<long> scan = Task.Factory.StartNew(() => shrinker.Scan(1), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(punching.Wait(TestTimeouts.Long));
        Task use = Task.Factory.StartNew(() => range.UseRange(0, 1), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Assert.NotSame(use, await Task.WhenAny(use, Task.Delay(300)));
        release.Set();
        Assert.Equal(1, await scan.WaitAsync(TestTimeouts.Long));
        await use.WaitAsync(TestTimeouts.Long);
        region.PunchFaultInjector = null;

        Assert.Equal(PageState.Used, range.GetPageState(0));
        region.GetSpan(0, s_page).Fill(0x5A);
        Assert.Equal(s_page, region.ResidentBytes);
        Assert.Equal(0, shrinker.Scan(4));
        Assert.True(region.GetSpan(0, s_page).IndexOfAnyExcept((byte)0x5A) < 0);
        Assert.Equal(0, shrinker.PunchFailures);
    }

    [Fact]
    public async Task Dispose_WhileAPunchIsInFlight_WaitsForIt_AndTheRegionOutlivesThePunch()
    {
        // The mm lock's second purpose: the owner let go of the region first, so the range's Dispose closes the memfd;
        // were it not to wait, the punch in flight would hit a closed descriptor (a failed punch, or another file's).
        var shrinker = new Shrinker();
        var region = SharedRegion.Create("punch-vs-dispose", 4 * s_page);
        var range = new ShrinkablePageRange(region, 0, 4, shrinker);
        range.UseRange(0, 2);
        range.StopUsingRange(0, 2);
        using var punching = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int punches = 0;
        region.PunchFaultInjector = _ =>
        {
            // Only the shrinker's punch is held; the dispose's own punches go through.
            if (Interlocked.Increment(ref punches) == 1)
            {
                punching.Set();
                Assert.True(release.Wait(TestTimeouts.Long));
            }
            return false;
        };
        Task<long> scan = Task.Factory.StartNew(() => shrinker.Scan(1), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(punching.Wait(TestTimeouts.Long));
        region.Dispose();
        Task dispose = Task.Factory.StartNew(range.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Assert.NotSame(dispose, await Task.WhenAny(dispose, Task.Delay(300)));
        release.Set();
        Assert.Equal(1, await scan.WaitAsync(TestTimeouts.Long));
        await dispose.WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, shrinker.PunchFailures);
        Assert.False(shrinker.WalkLru().ContainsKey(range));
        Assert.Equal(0, shrinker.Count());
    }

    [Fact]
    public void Dispose_RacingTheShrinker_IsSafe()
    {
        var shrinker = new Shrinker();
        using var stop = new CancellationTokenSource();
        var errors = new List<Exception>();
        var scanner = new Thread(() =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    shrinker.Scan(2);
                }
            }
            catch (Exception error)
            {
                lock (errors)
                {
                    errors.Add(error);
                }
            }
        });
        scanner.Start();
        var clock = Stopwatch.StartNew();
        int rounds = 0;
        try
        {
            for (; rounds < 300 && clock.Elapsed < TimeSpan.FromSeconds(2); rounds++)
            {
                // The owner lets go of the region first, so the range's Dispose drops the last reference and closes
                // the memfd: were it not to wait for a punch in flight, that punch would hit a closed descriptor.
                var region = SharedRegion.Create("dispose-race", 16 * s_page);
                var range = new ShrinkablePageRange(region, 0, 16, shrinker);
                range.UseRange(0, 16);
                range.StopUsingRange(0, 16);
                region.Dispose();
                range.Dispose();
                Assert.False(shrinker.WalkLru().ContainsKey(range));
            }
        }
        finally
        {
            stop.Cancel();
            Assert.True(scanner.Join(TestTimeouts.Short));
        }
        Assert.Empty(errors);
        Assert.True(rounds > 0);
        Assert.Equal(0, shrinker.Count());
        Assert.Empty(shrinker.WalkLru());
        Assert.Equal(0, shrinker.PunchFailures);
    }
}
