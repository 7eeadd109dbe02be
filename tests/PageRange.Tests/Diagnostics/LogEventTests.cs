using System.Reflection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Allocation;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// PageRange's log events reach a real <see cref="ILoggerFactory"/> with their stable ids, categories and levels, and
/// cost nothing when no factory is given.
/// </summary>
public sealed class LogEventTests
{
    private static readonly long s_page = AllocatorHarness.Page;

    [Fact]
    public void EventIds_EveryLogMethod_HasTheDocumentedIdOfItsName_NoIdTwice()
    {
        MethodInfo[] methods = typeof(PageRangeLog).GetMethods(BindingFlags.Static | BindingFlags.NonPublic)
            .Where(method => method.GetCustomAttribute<LoggerMessageAttribute>() is not null)
            .ToArray();
        Dictionary<string, int> documented = typeof(PageRangeLogEvents).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(field => field.FieldType == typeof(int))
            .ToDictionary(field => field.Name, field => (int)field.GetRawConstantValue()!);

        Assert.Equal(19, methods.Length);
        Assert.Equal(documented.Keys.Order(), methods.Select(method => method.Name).Order());
        Assert.All(methods, method => Assert.Equal(documented[method.Name], method.GetCustomAttribute<LoggerMessageAttribute>()!.EventId));
        Assert.Equal(documented.Count, documented.Values.Distinct().Count());
    }

    [Fact]
    public void CreateLogger_NoFactory_IsTheNullLogger()
    {
        Assert.Same(NullLogger.Instance, PageRangeLog.CreateLogger(null, PageRangeLogEvents.TransportCategory));
    }

    [Fact]
    public void IgnoredFree_NoLogger_AllocatesNothing()
    {
        using SharedRegion region = SharedRegion.Create("log-null", s_page);
        using var pages = new ShrinkablePageRange(region, 0, 1, new Shrinker());
        var allocator = new PageRange.Allocation.BufferAllocator(pages);
        allocator.Free(8);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            allocator.Free(8);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(101, allocator.IgnoredFrees);
    }

    [Fact]
    public void Allocator_IgnoredFrees_RateLimited_TheNextLineSaysHowManyWentUnlogged()
    {
        // A peer can publish bogus frees by the ring-full: each was a Warning line, under the send lock (binder
        // rate-limits the same message).
        using var harness = new AllocatorHarness(10);
        for (int i = 1; i <= 1000; i++)
        {
            harness.Allocator.Free(8L * i);
        }
        Assert.Equal(1000, harness.Allocator.IgnoredFrees);
        LogEntry[] lines = [.. harness.LogEntries.Where(entry => entry.EventId.Id == PageRangeLogEvents.IgnoredFree)];
        Assert.Equal(PageRange.Allocation.BufferAllocator.IgnoredFreeLogBurst, lines.Length);
        Assert.All(lines, line => Assert.DoesNotContain("not logged", line.Message, StringComparison.Ordinal));

        // The window over (made instant here), the next line counts those that went unlogged.
        harness.Allocator.IgnoredFreeLogInterval = TimeSpan.Zero;
        harness.Allocator.Free(8);
        LogEntry next = harness.LogEntries.Last(entry => entry.EventId.Id == PageRangeLogEvents.IgnoredFree);
        Assert.Equal(
            $"free of offset 8 ignored: no buffer starts there (unknown or already freed); {1000 - PageRange.Allocation.BufferAllocator.IgnoredFreeLogBurst} more ignored frees were not logged before this one",
            next.Message);
    }

    [Fact]
    public void Allocator_IgnoredFreeAndOnewaySpam_LoggedWithTheirIdsAndCategory()
    {
        using var harness = new AllocatorHarness(10);
        long size = harness.Allocator.DataSize;
        harness.Allocator.Free(16);
        // Binder's spam check: less than a tenth of the quota left, the sender holding more than a quarter of the area.
        harness.Allocator.Reserve((size / 4) + 8, oneway: true, senderPid: 42);
        harness.Allocator.Reserve(harness.Allocator.FreeOnewaySpace - (size / 10) + 8, oneway: true, senderPid: 42);

        LogEntry ignored = Assert.Single(harness.LogEntries, entry => entry.EventId.Id == PageRangeLogEvents.IgnoredFree);
        Assert.Equal(PageRangeLogEvents.AllocationCategory, ignored.Category);
        Assert.Equal(LogLevel.Warning, ignored.Level);
        Assert.Equal(nameof(PageRangeLogEvents.IgnoredFree), ignored.EventId.Name);
        Assert.Equal("free of offset 16 ignored: no buffer starts there (unknown or already freed)", ignored.Message);
        LogEntry spam = Assert.Single(harness.LogEntries, entry => entry.EventId.Id == PageRangeLogEvents.OnewaySpamSuspected);
        Assert.Equal(LogLevel.Warning, spam.Level);
        Assert.StartsWith("pid 42 spamming oneway? 2 buffers allocated for a total size of ", spam.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Allocator_NoSpace_LoggedOnceWithTheSummary()
    {
        using var harness = new AllocatorHarness(1);
        harness.Allocator.Reserve(s_page, oneway: false);

        Assert.Throws<RegionFullException>(() => harness.Allocator.Reserve(8, oneway: false));

        LogEntry failed = Assert.Single(harness.LogEntries);
        Assert.Equal(PageRangeLogEvents.AllocationFailed, failed.EventId.Id);
        Assert.StartsWith("no address space for 8 bytes; allocated: ", failed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shrinker_Pass_LoggedWithScannedAndFreedPages()
    {
        using var capture = new LogCapture();
        var shrinker = new Shrinker();
        shrinker.UseLoggerFactory(capture.Factory);
        using SharedRegion region = SharedRegion.Create("log-shrinker", 4 * s_page);
        using var pages = new ShrinkablePageRange(region, 0, 4, shrinker);
        pages.UseRange(0, 4);
        pages.StopUsingRange(0, 3);

        Assert.Equal(3, shrinker.Scan(10));
        Assert.Equal(0, shrinker.Scan(10));

        // The second scan found an empty LRU: it walked nothing and logged nothing.
        LogEntry pass = Assert.Single(capture.Entries);
        Assert.Equal(PageRangeLogEvents.ShrinkerPass, pass.EventId.Id);
        Assert.Equal(PageRangeLogEvents.MemoryCategory, pass.Category);
        Assert.Equal(LogLevel.Debug, pass.Level);
        Assert.Equal("Shrinker pass: scanned 3 pages, freed 3, skipped 0", pass.Message);
    }

    [Fact]
    public void Shrinker_SecondFactory_FirstOneKept()
    {
        using var first = new LogCapture();
        using var second = new LogCapture();
        var shrinker = new Shrinker();
        shrinker.UseLoggerFactory(first.Factory);
        shrinker.UseLoggerFactory(second.Factory);
        shrinker.UseLoggerFactory(null);
        using SharedRegion region = SharedRegion.Create("log-shrinker-2", s_page);
        using var pages = new ShrinkablePageRange(region, 0, 1, shrinker);
        pages.UseRange(0, 1);
        pages.StopUsingRange(0, 1);

        shrinker.Scan(1);

        Assert.Single(first.Entries);
        Assert.Empty(second.Entries);
    }

    [Fact]
    public void Monitor_PressureBeginsAndEnds_OneEventEachChange_NoneWhileSteady()
    {
        using var capture = new LogCapture();
        var shrinker = new Shrinker();
        MemoryPressureReading reading = new(0.0, 900, 1000, 10.0);
        var options = new ShrinkerOptions { PollingPeriod = TimeSpan.FromHours(1), LoggerFactory = capture.Factory };
        using MemoryPressureMonitor monitor = shrinker.StartMonitorCore(options, () => reading);

        monitor.Poll();
        reading = new MemoryPressureReading(25.0, 40, 1000, 10.0);
        monitor.Poll();
        monitor.Poll();
        reading = new MemoryPressureReading(0.0, 900, 1000, 10.0);
        monitor.Poll();

        LogEntry[] changes = capture.WithId(PageRangeLogEvents.MemoryPressureChanged);
        Assert.Equal(2, changes.Length);
        Assert.All(changes, change => Assert.Equal(LogLevel.Information, change.Level));
        Assert.Equal(
            "Memory pressure signals Psi, MemAvailable (were None): PSI some avg10 25%, MemAvailable 40 of 1000 bytes, GC memory load 10%",
            changes[0].Message);
        Assert.StartsWith("Memory pressure signals None (were Psi, MemAvailable)", changes[1].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PageRangeOptions_LoggerFactory_DefaultsToNull_CopiedByClone()
    {
        using var capture = new LogCapture();
        var options = new PageRangeOptions();
        Assert.Null(options.LoggerFactory);

        options.LoggerFactory = capture.Factory;

        Assert.Same(capture.Factory, options.Clone().LoggerFactory);
    }
}
