using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Memory;

/// <summary>
/// One <see cref="Shrinker.Scan"/> is bounded: it visits each page on the LRU when it began at most once, never loops
/// on a page whose punch keeps failing, and lets go of the LRU lock between batches of busy pages.
/// </summary>
public sealed class ShrinkerScanBoundsTests(ITestOutputHelper output)
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public async Task Scan_PunchKeepsFailing_VisitsEachPageOnceAndReturns()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("scan-punch-fails", 16L * s_page);
        using var range = new ShrinkablePageRange(region, 0, 16, shrinker);
        range.UseRange(0, 16);
        range.StopUsingRange(0, 16);
        region.PunchFaultInjector = _ => true;

        long freed = await Task.Run(() => shrinker.Scan(long.MaxValue)).WaitAsync(TestTimeouts.Long);

        Assert.Equal(0, freed);
        Assert.Equal(16, shrinker.PagesScanned);
        Assert.Equal(16, shrinker.PunchFailures);
        // Every page went back on the LRU as Available, since its memory is still there.
        Assert.Equal(16, shrinker.Count());
        Assert.All(range.GetPageStates(), state => Assert.Equal(PageState.Available, state));
        Assert.Equal(16L * s_page, region.ResidentBytes);

        // A second scan visits them once more, no more; with the kernel willing again, they go.
        Assert.Equal(0, await Task.Run(() => shrinker.Scan(long.MaxValue)).WaitAsync(TestTimeouts.Long));
        Assert.Equal(32, shrinker.PagesScanned);
        region.PunchFaultInjector = null;
        Assert.Equal(16, shrinker.Scan(long.MaxValue));
        Assert.Equal(0, region.ResidentBytes);
    }

    [Fact]
    public void Scan_PagesQueuedWhileItRuns_AreLeftForTheNextScan()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("scan-queued-during", 8L * s_page);
        using var range = new ShrinkablePageRange(region, 0, 8, shrinker);
        range.UseRange(0, 8);
        range.StopUsingRange(0, 4);
        int injected = 0;
        // The first punch runs with the LRU lock released: pages 4..7 join the LRU's tail right then.
        region.PunchFaultInjector = _ =>
        {
            if (Interlocked.Exchange(ref injected, 1) == 0)
            {
                range.StopUsingRange(4, 8);
            }
            return false;
        };

        Assert.Equal(4, shrinker.Scan(long.MaxValue));

        Assert.Equal(4, shrinker.PagesScanned);
        Assert.Equal(4, shrinker.Count());
        Assert.Equal([PageState.Free, PageState.Free, PageState.Free, PageState.Free, PageState.Available, PageState.Available, PageState.Available, PageState.Available], range.GetPageStates());
    }

    [Fact]
    public void Scan_LongRunOfBusyPages_SkipsEachOnceAndReleasesTheLruLockBetweenBatches()
    {
        const int pages = 200;
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("scan-busy", pages * (long)s_page);
        using var range = new ShrinkablePageRange(region, 0, pages, shrinker);
        range.UseRange(0, pages);
        range.StopUsingRange(0, pages);

        // This thread holds the range's mm lock (no await in between: a lock belongs to its thread), so the scanning
        // thread skips every page.
        long freed = -1;
        var scanner = new Thread(() => freed = shrinker.Scan(long.MaxValue));
        range.MmLock.Enter();
        try
        {
            scanner.Start();
            Assert.True(scanner.Join(TestTimeouts.Long), "the scan returned");
        }
        finally
        {
            range.MmLock.Exit();
        }
        Assert.Equal(0, freed);

        Assert.Equal(pages, shrinker.PagesScanned);
        Assert.Equal(pages, shrinker.PagesSkipped);
        Assert.Equal(pages / Shrinker.SkipBatch, shrinker.SkipBatchReleases);
        Assert.Equal(pages, shrinker.Count());
        shrinker.WalkLru();
    }

    [Fact]
    public void ScanRacingUseAndStopUsingRange_EachScanVisitsAtMostTheLruItFoundAndTheBooksStayConsistent()
    {
        const int pagesA = 48;
        const int pagesB = 32;
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("scan-race", (pagesA + pagesB) * (long)s_page);
        using var rangeA = new ShrinkablePageRange(region, 0, pagesA, shrinker);
        using var rangeB = new ShrinkablePageRange(region, pagesA * (long)s_page, pagesB, shrinker);
        var clock = Stopwatch.StartNew();
        TimeSpan budget = TimeSpan.FromSeconds(2);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        long scans = 0;
        long maxVisited = 0;

        void Churn(ShrinkablePageRange range, int count, int threadSeed)
        {
            var random = new Random(threadSeed);
            try
            {
                while (clock.Elapsed < budget)
                {
                    int start = random.Next(count);
                    int end = Math.Min(count, start + 1 + random.Next(8));
                    // The seed allows UseRange and StopUsingRange to race, on the same pages too.
                    if (random.Next(2) == 0)
                    {
                        range.UseRange(start, end);
                    }
                    else
                    {
                        range.StopUsingRange(start, end);
                    }
                }
            }
            catch (Exception error)
            {
                errors.Enqueue(error);
            }
        }

        void Scanner()
        {
            var random = new Random(seed);
            try
            {
                while (clock.Elapsed < budget)
                {
                    // Scans are the only thing that moves PagesScanned, and this is the only scanning thread.
                    long before = shrinker.PagesScanned;
                    long asked = random.Next(3) == 0 ? long.MaxValue : random.Next(1, 40);
                    shrinker.Scan(asked);
                    long visited = shrinker.PagesScanned - before;
                    if (visited > Math.Min(asked, pagesA + pagesB))
                    {
                        throw new InvalidOperationException($"One scan visited {visited} pages; asked {asked}, and only {pagesA + pagesB} exist.");
                    }
                    maxVisited = Math.Max(maxVisited, visited);
                    scans++;
                }
            }
            catch (Exception error)
            {
                errors.Enqueue(error);
            }
        }

        Thread[] threads =
        [
            new(() => Churn(rangeA, pagesA, seed + 1)),
            new(() => Churn(rangeA, pagesA, seed + 2)),
            new(() => Churn(rangeB, pagesB, seed + 3)),
            new(Scanner),
        ];
        foreach (Thread thread in threads)
        {
            thread.Start();
        }
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TestTimeouts.Long), "a racing thread finished");
        }

        Assert.Empty(errors);
        output.WriteLine($"{scans} scans, at most {maxVisited} pages visited by one, {shrinker.PagesFreed} freed, {shrinker.PagesSkipped} skipped");
        Assert.True(scans > 0);
        shrinker.WalkLru();
        rangeA.GetPageStates();
        rangeB.GetPageStates();

        // Quiescent: everything stops being used, one scan takes it all, and the kernel agrees nothing is backed.
        rangeA.StopUsingRange(0, pagesA);
        rangeB.StopUsingRange(0, pagesB);
        shrinker.Scan(long.MaxValue);
        Assert.Equal(0, shrinker.Count());
        Assert.Equal(0, region.ResidentBytes);
    }
}
