using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Memory;

/// <summary>
/// Races what the seed says may race: threads calling <c>UseRange</c>/<c>StopUsingRange</c> on overlapping ranges of
/// two ranges sharing one shrinker, writers checksumming the pages they hold Used, and a thread scanning in a loop.
/// At every quiescent point (a barrier all threads reach) the invariants of BINDER.md A.10 are checked against the
/// books, the LRU and the kernel's count of backed bytes. Bounded in rounds and in time.
/// </summary>
public sealed class ShrinkablePageRangeStressTests(ITestOutputHelper output)
{
    private const int Writers = 2;
    private const int PagesPerWriter = 6;
    private const int ChurnThreads = 2;
    private const int ChurnPagesA = 12;
    private const int PagesA = (Writers * PagesPerWriter) + ChurnPagesA;
    private const int PagesB = 16;
    private const int Rounds = 400;
    private const int OpsPerRound = 40;
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(2.5);
    private static readonly int s_page = SharedRegion.PageSize;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void UseStopAndScan_Racing_KeepEveryInvariantAtQuiescentPoints(bool failSomePunches)
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("stress", (PagesA + PagesB) * (long)s_page);
        if (failSomePunches)
        {
            // A punch the kernel refuses puts its page back as Available (under the mm lock, then the range's and the
            // LRU's): that path raced with uses and stops too.
            region.PunchFaultInjector = _ => Random.Shared.Next(10) == 0;
        }
        using var rangeA = new ShrinkablePageRange(region, 0, PagesA, shrinker);
        using var rangeB = new ShrinkablePageRange(region, PagesA * (long)s_page, PagesB, shrinker);
        var writers = Enumerable.Range(0, Writers).Select(w => new Writer(rangeA, w * PagesPerWriter, seed + w)).ToArray();

        var errors = new List<Exception>();
        var clock = Stopwatch.StartNew();
        int arrived = 0;
        int checkpoints = 0;
        bool stop = false;
        int workers = Writers + ChurnThreads;

        void CheckQuiescent(Barrier _)
        {
            try
            {
                CheckInvariants(shrinker, region, rangeA, rangeB, writers);
                checkpoints++;
            }
            catch (Exception error)
            {
                lock (errors)
                {
                    errors.Add(error);
                }
            }
            // Decided here, while every thread waits, so all of them see the same answer after the barrier.
            stop = checkpoints >= Rounds || clock.Elapsed > s_budget || errors.Count > 0;
            arrived = 0;
        }

        using var barrier = new Barrier(workers + 1, CheckQuiescent);

        void Run(Action<Random> op, int threadSeed, bool isScanner)
        {
            var random = new Random(threadSeed);
            try
            {
                while (!Volatile.Read(ref stop))
                {
                    if (isScanner)
                    {
                        // Scan while the workers work; join the barrier once every worker has arrived.
                        while (Volatile.Read(ref arrived) < workers && !Volatile.Read(ref stop))
                        {
                            op(random);
                            Thread.Yield();
                        }
                    }
                    else
                    {
                        for (int i = 0; i < OpsPerRound && errors.Count == 0; i++)
                        {
                            op(random);
                        }
                        Interlocked.Increment(ref arrived);
                    }
                    if (!barrier.SignalAndWait(TestTimeouts.Long))
                    {
                        throw new TimeoutException("A thread did not reach the barrier.");
                    }
                }
            }
            catch (Exception error)
            {
                lock (errors)
                {
                    errors.Add(error);
                }
                Volatile.Write(ref stop, true);
                barrier.RemoveParticipant();
            }
        }

        var threads = new List<Thread>();
        for (int w = 0; w < Writers; w++)
        {
            Writer writer = writers[w];
            threads.Add(new Thread(() => Run(writer.Step, seed + w, isScanner: false)));
        }
        for (int c = 0; c < ChurnThreads; c++)
        {
            threads.Add(new Thread(() => Run(random => Churn(random, rangeA, rangeB), seed + 100 + c, isScanner: false)));
        }
        threads.Add(new Thread(() => Run(random =>
        {
            if (random.Next(16) == 0)
            {
                shrinker.ScanIdle(TimeSpan.Zero);
            }
            else
            {
                shrinker.Scan(random.Next(1, 5));
            }
        }, seed + 200, isScanner: true)));

        foreach (Thread thread in threads)
        {
            thread.Start();
        }
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TestTimeouts.Long), "A stress thread did not finish.");
        }
        Assert.Empty(errors);
        Assert.True(checkpoints > 0);
        output.WriteLine($"{checkpoints} checkpoints in {clock.Elapsed}; scanned {shrinker.PagesScanned}, freed {shrinker.PagesFreed}, skipped {shrinker.PagesSkipped}");
        Assert.True(shrinker.PagesFreed > 0, "The scanner never reclaimed a page: the test raced nothing.");
        Assert.Equal(failSomePunches, shrinker.PunchFailures > 0);
        region.PunchFaultInjector = null;

        // Every buffer freed: every page that was ever touched is Available (A.10.6) ...
        foreach (Writer writer in writers)
        {
            writer.ReleaseAll();
        }
        rangeA.StopUsingRange(Writers * PagesPerWriter, PagesA);
        rangeB.StopUsingRange(0, PagesB);
        Assert.DoesNotContain(PageState.Used, rangeA.GetPageStates());
        Assert.DoesNotContain(PageState.Used, rangeB.GetPageStates());
        CheckInvariants(shrinker, region, rangeA, rangeB, writers);

        // ... and after a full reclaim every page is Free and nothing is resident (A.10.7).
        shrinker.Scan(long.MaxValue);
        Assert.All(rangeA.GetPageStates(), state => Assert.Equal(PageState.Free, state));
        Assert.All(rangeB.GetPageStates(), state => Assert.Equal(PageState.Free, state));
        Assert.Equal(0, shrinker.Count());
        Assert.Equal(0, region.ResidentBytes);
    }

    /// <summary>Overlapping use/stop of the shared churn pages of both ranges, including empty and inverted ranges.</summary>
    private static void Churn(Random random, ShrinkablePageRange rangeA, ShrinkablePageRange rangeB)
    {
        bool onA = random.Next(2) == 0;
        ShrinkablePageRange range = onA ? rangeA : rangeB;
        int low = onA ? Writers * PagesPerWriter : 0;
        int high = onA ? PagesA : PagesB;
        int start = random.Next(low, high + 1);
        int end = random.Next(6) == 0 ? random.Next(low, start + 1) : Math.Min(high, start + random.Next(1, 6));
        if (random.Next(2) == 0)
        {
            range.UseRange(start, end);
        }
        else
        {
            range.StopUsingRange(start, end);
        }
    }

    private static void CheckInvariants(
        Shrinker shrinker, SharedRegion region, ShrinkablePageRange rangeA, ShrinkablePageRange rangeB, Writer[] writers)
    {
        PageState[] statesA = rangeA.GetPageStates();
        PageState[] statesB = rangeB.GetPageStates();
        Dictionary<ShrinkablePageRange, int> lru = shrinker.WalkLru();

        // A.10.5: the LRU holds exactly the Available pages of each range.
        Assert.Equal(statesA.Count(s => s == PageState.Available), lru.GetValueOrDefault(rangeA));
        Assert.Equal(statesB.Count(s => s == PageState.Available), lru.GetValueOrDefault(rangeB));

        // A.10.2/3: Used and Available pages are backed, Free pages are not: the kernel's count agrees with the books.
        int backed = statesA.Concat(statesB).Count(s => s != PageState.Free);
        Assert.Equal((long)backed * s_page, region.ResidentBytes);

        // A.10.1/4: a writer's page is Used exactly while the writer holds it, and its bytes are what it wrote.
        foreach (Writer writer in writers)
        {
            writer.CheckQuiescent(statesA);
        }
    }

    /// <summary>
    /// Owns a disjoint block of pages of range A. Holds a random segment Used while it fills it and checks its checksum,
    /// then stops using it; when it uses pages again, each must hold either its last bytes (reused while Available) or
    /// zeros (reclaimed) in full, never a mix.
    /// </summary>
    private sealed class Writer(ShrinkablePageRange range, int firstPage, int seed)
    {
        private readonly ulong[] _lastChecksum = new ulong[PagesPerWriter];
        private readonly byte[] _scratch = new byte[SharedRegion.PageSize];
        private int _heldStart = -1;
        private int _heldEnd = -1;
        private byte _generation = (byte)seed;

        public void Step(Random random)
        {
            if (_heldStart >= 0)
            {
                VerifyHeld();
                range.StopUsingRange(firstPage + _heldStart, firstPage + _heldEnd);
                _heldStart = _heldEnd = -1;
                return;
            }

            int start = random.Next(PagesPerWriter);
            int end = random.Next(start + 1, PagesPerWriter + 1);
            range.UseRange(firstPage + start, firstPage + end);
            for (int p = start; p < end; p++)
            {
                ulong found = Checksum(p);
                if (found != _lastChecksum[p] && found != s_zeroPageChecksum)
                {
                    throw new InvalidOperationException($"Page {firstPage + p} came back neither with its bytes nor zeroed.");
                }
                _generation++;
                Fill(_scratch, _generation, firstPage + p);
                range.CopyFrom(PageOffset(p), _scratch);
                _lastChecksum[p] = Fnv(_scratch);
            }
            _heldStart = start;
            _heldEnd = end;
        }

        public void CheckQuiescent(PageState[] states)
        {
            for (int p = 0; p < PagesPerWriter; p++)
            {
                bool held = p >= _heldStart && p < _heldEnd;
                Assert.Equal(held, states[firstPage + p] == PageState.Used);
            }
            if (_heldStart >= 0)
            {
                VerifyHeld();
            }
        }

        public void ReleaseAll()
        {
            if (_heldStart >= 0)
            {
                range.StopUsingRange(firstPage + _heldStart, firstPage + _heldEnd);
                _heldStart = _heldEnd = -1;
            }
        }

        private void VerifyHeld()
        {
            for (int p = _heldStart; p < _heldEnd; p++)
            {
                if (Checksum(p) != _lastChecksum[p])
                {
                    throw new InvalidOperationException($"Page {firstPage + p} changed while Used.");
                }
            }
        }

        private ulong Checksum(int p)
        {
            range.Read(PageOffset(p), _scratch);
            return Fnv(_scratch);
        }

        private long PageOffset(int p) => (long)(firstPage + p) * SharedRegion.PageSize;
    }

    private static readonly ulong s_zeroPageChecksum = Fnv(new byte[SharedRegion.PageSize]);

    private static void Fill(Span<byte> page, byte generation, int pageIndex)
    {
        for (int i = 0; i < page.Length; i++)
        {
            page[i] = (byte)((generation * 31) + (i * 7) + pageIndex + 1);
        }
    }

    private static ulong Fnv(ReadOnlySpan<byte> bytes)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in bytes)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }
        return hash;
    }
}
