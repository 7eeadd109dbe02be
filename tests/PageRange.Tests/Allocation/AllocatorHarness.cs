using PageRange.Allocation;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Diagnostics;

namespace PageRange.Tests.Allocation;

/// <summary>
/// A real region and page range with a private <see cref="Shrinker"/> (so <c>Scan</c> touches only this test's
/// pages), and an allocator over all of it whose log lines are kept.
/// </summary>
internal sealed class AllocatorHarness : IDisposable
{
    internal static readonly int Page = SharedRegion.PageSize;

    private readonly LogCapture _log = new();

    internal AllocatorHarness(int pageCount)
    {
        Region = SharedRegion.Create("pagerange-alloc-test", (long)pageCount * Page);
        Pages = new ShrinkablePageRange(Region, 0, pageCount, Shrinker);
        Allocator = new BufferAllocator(Pages, new BufferAllocatorOptions
        {
            Logger = _log.Factory.CreateLogger(PageRangeLogEvents.AllocationCategory),
        });
    }

    internal Shrinker Shrinker { get; } = new();

    internal SharedRegion Region { get; }

    internal ShrinkablePageRange Pages { get; }

    internal BufferAllocator Allocator { get; }

    internal int PageCount => Pages.PageCount;

    /// <summary>The allocator's log messages, formatted.</summary>
    internal string[] LogLines => _log.Messages;

    /// <summary>The allocator's log events.</summary>
    internal LogEntry[] LogEntries => _log.Entries;

    internal PageState[] PageStates() => [.. Enumerable.Range(0, PageCount).Select(Pages.GetPageState)];

    /// <summary>The pages a buffer <c>[offset, offset+size)</c> touches.</summary>
    internal static (int First, int End) Touched(long offset, long size) =>
        ((int)(offset / Page), (int)((offset + size + Page - 1) / Page));

    /// <summary>Whether any of <paramref name="live"/> overlaps page <paramref name="page"/>.</summary>
    internal static bool Overlapped(IEnumerable<(long Offset, long Size)> live, int page)
    {
        long start = (long)page * Page;
        long end = start + Page;
        return live.Any(b => b.Offset < end && b.Offset + b.Size > start);
    }

    /// <summary>
    /// Page invariants (BINDER.md A.10): Used iff overlapped by a live buffer; Available iff backed and not
    /// overlapped; Free iff not backed. The LRU holds exactly the Available pages and the kernel's resident bytes
    /// are exactly the backed pages.
    /// </summary>
    internal void AssertPages(IReadOnlyCollection<(long Offset, long Size)> live, bool[] backed)
    {
        PageState[] states = PageStates();
        for (int page = 0; page < PageCount; page++)
        {
            PageState expected = Overlapped(live, page) ? PageState.Used : backed[page] ? PageState.Available : PageState.Free;
            if (states[page] != expected)
            {
                Assert.Fail($"Page {page} is {states[page]}, expected {expected}. Live: [{string.Join(", ", live.Select(b => $"{b.Offset}+{b.Size}"))}]\n{Allocator.DumpState()}");
            }
        }
        Assert.Equal(states.Count(s => s == PageState.Available), Shrinker.Count());
        Assert.Equal(backed.Count(b => b) * (long)Page, Region.ResidentBytes);
    }

    /// <summary>The allocator's live buffers as (offset, size).</summary>
    internal (long Offset, long Size)[] Live() => [.. Allocator.GetBuffers().Select(b => (b.Offset, b.Size))];

    public void Dispose()
    {
        Pages.Dispose();
        Region.Dispose();
        _log.Dispose();
    }
}
