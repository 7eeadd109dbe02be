using PageRange.Memory;

namespace PageRange.Tests.Memory;

/// <summary>
/// The page bookkeeping grows with the pages used, chunk by chunk, and Dispose gives back every page the range backed
/// even though the region stays open.
/// </summary>
public sealed class ShrinkablePageRangeChunkTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void UseRange_FarPages_AllocatesOnlyTheirChunks()
    {
        int pages = (3 * ShrinkablePageRange.ChunkPages) + 5;
        using var region = SharedRegion.Create("chunks", pages * (long)s_page);
        using var range = new ShrinkablePageRange(region, 0, pages, new Shrinker());
        Assert.Equal(0, range.AllocatedChunks);

        // Pages never used read as Free everywhere, and stopping to use them changes nothing.
        Assert.Equal(PageState.Free, range.GetPageState(pages - 1));
        range.StopUsingRange(0, pages);
        Assert.Throws<PageNotInUseException>(() => range.FillZero((long)(pages - 1) * s_page, 1));
        Assert.Equal(0, range.AllocatedChunks);

        // The last, partial chunk, then a run across a chunk boundary.
        range.UseRange(pages - 1, pages);
        Assert.Equal(1, range.AllocatedChunks);
        range.UseRange(ShrinkablePageRange.ChunkPages - 1, ShrinkablePageRange.ChunkPages + 1);
        Assert.Equal(3, range.AllocatedChunks);
        range.Write((long)(pages - 1) * s_page, (byte)7);

        PageState[] states = range.GetPageStates();
        Assert.Equal(3, states.Count(state => state == PageState.Used));
        Assert.Equal(PageState.Used, states[pages - 1]);
        Assert.Equal(new PageRangeStats(3, 0, pages - 3, pages, 3L * s_page), range.GetStats());
    }

    [Fact]
    public void Dispose_RegionStillOpen_PunchesEveryPageTheRangeBacked()
    {
        using var region = SharedRegion.Create("chunks-dispose", 64L * s_page);
        var shrinker = new Shrinker();
        var range = new ShrinkablePageRange(region, 4L * s_page, 32, shrinker);
        using (var neighbour = new ShrinkablePageRange(region, 40L * s_page, 4, shrinker))
        {
            neighbour.UseRange(0, 4);
            range.UseRange(0, 10);
            range.UseRange(20, 32);
            range.StopUsingRange(5, 10);
            Assert.Equal(26L * s_page, region.ResidentBytes);

            range.Dispose();

            // The neighbour's pages are not the range's: they stay.
            Assert.Equal(4L * s_page, region.ResidentBytes);
            Assert.False(range.DisposePunchFailed);
            Assert.Equal(0, shrinker.Count());
            Assert.Equal(new PageRangeStats(0, 0, 32, 32, 0), range.GetStats());
        }
        Assert.Equal(0, region.ResidentBytes);
    }
}
