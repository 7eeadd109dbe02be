using PageRange.Allocation;
using PageRange.Memory;

namespace PageRange.Tests.Allocation;

/// <summary>
/// Buffers whose ends fall on the same page, on a page boundary, on the next page and beyond, packed at the front
/// and at the back of a small area, freed in every order, in array mode and in tree mode (BINDER.md A.9, A.10, B.6).
/// After each step the page states are exactly what the live buffers imply.
/// </summary>
public sealed class BufferAllocatorPageBoundaryTests
{
    private static readonly long s_page = AllocatorHarness.Page;

    /// <summary>The scenario area, in pages. Tree mode adds one page filled by eight anchor buffers.</summary>
    private const int AreaPages = 6;

    private static readonly Dictionary<string, long[]> s_scenarios = new()
    {
        ["ends on the same page"] = [8, 16, 24, 40],
        ["ends on a page boundary"] = [s_page - 24, 16, 8, 8],
        ["ends on the next page"] = [s_page - 8, 16, 8],
        ["ends pages beyond"] = [s_page + 8, 2 * s_page, 8, s_page - 16],
        ["whole pages"] = [s_page, s_page, 2 * s_page],
        ["straddles pages"] = [s_page / 2, s_page, (s_page / 2) + 8, 8],
    };

    public static TheoryData<string, bool, bool> Scenarios()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (string name in s_scenarios.Keys)
        {
            foreach (bool atBack in new[] { false, true })
            {
                foreach (bool tree in new[] { false, true })
                {
                    data.Add(name, atBack, tree);
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void Buffers_FreedInEveryOrder_PagesFollowLiveBuffers(string scenario, bool atBack, bool tree)
    {
        long[] sizes = s_scenarios[scenario];
        foreach (int[] order in Permutations(sizes.Length))
        {
            RunOrder(sizes, atBack, tree, order);
        }
    }

    private static void RunOrder(long[] sizes, bool atBack, bool tree, int[] order)
    {
        int pageCount = AreaPages + (tree ? 1 : 0);
        using var harness = new AllocatorHarness(pageCount);
        BufferAllocator allocator = harness.Allocator;
        long area = AreaPages * s_page;
        var live = new List<(long Offset, long Size)>();
        var backed = new bool[pageCount];

        void Reserved(long offset, long size)
        {
            live.Add((offset, size));
            (int first, int end) = AllocatorHarness.Touched(offset, size);
            for (int page = first; page < end; page++)
            {
                backed[page] = true;
            }
            harness.AssertPages(live, backed);
        }

        void Freed(long offset)
        {
            allocator.Commit(offset);
            Assert.True(allocator.Free(offset));
            live.RemoveAll(b => b.Offset == offset);
            harness.AssertPages(live, backed);
        }

        if (tree)
        {
            // Eight anchors fill the last page, so the ninth buffer makes a tree and the area is the only free range.
            // The pages the first reservation backed are reclaimed, so the scenario starts from Free pages.
            long whole = allocator.Reserve(area, oneway: false);
            Reserved(whole, area);
            for (int i = 0; i < BufferAllocator.TreeThreshold; i++)
            {
                Reserved(allocator.Reserve(s_page / BufferAllocator.TreeThreshold, oneway: false), s_page / BufferAllocator.TreeThreshold);
            }
            Assert.Equal(AllocatorMode.Tree, allocator.Mode);
            allocator.Abort(whole);
            live.Remove((whole, area));
            harness.Shrinker.Scan(long.MaxValue);
            Array.Clear(backed, 0, AreaPages);
            harness.AssertPages(live, backed);
        }

        long total = sizes.Sum();
        long cursor = 0;
        long filler = -1;
        if (atBack)
        {
            filler = allocator.Reserve(area - total, oneway: false);
            Assert.Equal(0, filler);
            Reserved(filler, area - total);
            cursor = area - total;
        }
        long[] offsets = new long[sizes.Length];
        for (int i = 0; i < sizes.Length; i++)
        {
            offsets[i] = allocator.Reserve(sizes[i], oneway: i % 2 == 1, clearOnFree: i == 0);
            Assert.Equal(cursor, offsets[i]);
            Reserved(offsets[i], sizes[i]);
            cursor += sizes[i];
        }
        if (atBack)
        {
            Freed(filler);
        }
        foreach (int index in order)
        {
            Freed(offsets[index]);
            allocator.Validate();
        }

        // Every page the scenario touched is Available; the LRU holds exactly those pages.
        Assert.Equal(allocator.OnewayQuota, allocator.FreeOnewaySpace);
        Assert.Equal((0L, area), allocator.GetFreeRanges()[0]);
        PageState[] states = harness.PageStates();
        for (int page = 0; page < AreaPages; page++)
        {
            Assert.Equal(backed[page] ? PageState.Available : PageState.Free, states[page]);
        }
        Assert.Equal(backed.Take(AreaPages).Count(b => b), harness.Shrinker.Count());

        // Reallocating the whole area takes every page off the LRU.
        long again = allocator.Reserve(area, oneway: false);
        Assert.Equal(0, again);
        Assert.Equal(0, harness.Shrinker.Count());
        Assert.All(harness.PageStates(), s => Assert.Equal(PageState.Used, s));
        allocator.Abort(again);
        Array.Fill(backed, true);
        harness.AssertPages(live, backed);
        foreach ((long offset, _) in live.ToArray())
        {
            Freed(offset);
        }

        // A full scan leaves every page Free and gives the memory back.
        Assert.Equal(pageCount, harness.Shrinker.Scan(long.MaxValue));
        Assert.All(harness.PageStates(), s => Assert.Equal(PageState.Free, s));
        Assert.Equal(0, harness.Region.ResidentBytes);
    }

    private static IEnumerable<int[]> Permutations(int count)
    {
        if (count == 0)
        {
            yield return [];
            yield break;
        }
        foreach (int[] rest in Permutations(count - 1))
        {
            for (int position = 0; position <= rest.Length; position++)
            {
                yield return [.. rest[..position], count - 1, .. rest[position..]];
            }
        }
    }
}
