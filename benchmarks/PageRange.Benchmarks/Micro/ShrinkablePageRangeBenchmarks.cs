using BenchmarkDotNet.Attributes;
using PageRange.Memory;

namespace PageRange.Benchmarks.Micro;

/// <summary>
/// The page range's transitions, one page per call, over <see cref="Pages"/> pages per invocation. Each benchmark's
/// <c>IterationSetup</c> puts every page in the state the benchmark starts from, so each call measures exactly the
/// transition its name says: Available -> Used (fast path), Used -> Used (idempotent), Free -> Used (slow path with
/// fallocate), Used -> Available, and Available -> Free (the shrinker's scan, punch included).
/// </summary>
[MemoryDiagnoser]
public class ShrinkablePageRangeBenchmarks
{
    /// <summary>Pages per invocation: enough that an invocation lasts well beyond the timer's resolution.</summary>
    public const int Pages = 8192;

    private Shrinker _shrinker = null!;
    private SharedRegion _region = null!;
    private ShrinkablePageRange _range = null!;

    [GlobalSetup]
    public void GlobalSetup()
    {
        _shrinker = new Shrinker();
        _region = SharedRegion.Create("bench", (long)Pages * SharedRegion.PageSize);
        _range = new ShrinkablePageRange(_region, 0, Pages, _shrinker);
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _range.Dispose();
        _region.Dispose();
    }

    [IterationSetup(Targets = [nameof(UseRangeAvailableToUsed), nameof(ScanAvailableToFree)])]
    public void AllAvailable()
    {
        _range.UseRange(0, Pages);
        _range.StopUsingRange(0, Pages);
    }

    [IterationSetup(Targets = [nameof(UseRangeUsedIdempotent), nameof(StopUsingRangeUsedToAvailable)])]
    public void AllUsed() => _range.UseRange(0, Pages);

    [IterationSetup(Target = nameof(UseRangeFreeToUsed))]
    public void AllFree()
    {
        _range.StopUsingRange(0, Pages);
        _shrinker.Scan(long.MaxValue);
    }

    /// <summary>Fast path: a backed page leaves the LRU.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void UseRangeAvailableToUsed()
    {
        for (int i = 0; i < Pages; i++)
        {
            _range.UseRange(i, i + 1);
        }
    }

    /// <summary>Fast path on a page already Used: nothing changes.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void UseRangeUsedIdempotent()
    {
        for (int i = 0; i < Pages; i++)
        {
            _range.UseRange(i, i + 1);
        }
    }

    /// <summary>Slow path: fallocate backs the page under the mm lock.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void UseRangeFreeToUsed()
    {
        for (int i = 0; i < Pages; i++)
        {
            _range.UseRange(i, i + 1);
        }
    }

    /// <summary>A Used page joins the LRU.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void StopUsingRangeUsedToAvailable()
    {
        for (int i = 0; i < Pages; i++)
        {
            _range.StopUsingRange(i, i + 1);
        }
    }

    /// <summary>The shrinker reclaims every page: try-locks, isolate, punch the hole; per page.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public long ScanAvailableToFree() => _shrinker.Scan(Pages);
}
