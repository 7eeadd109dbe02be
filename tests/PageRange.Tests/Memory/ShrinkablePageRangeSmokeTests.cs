using PageRange.Memory;

namespace PageRange.Tests.Memory;

public sealed class ShrinkablePageRangeSmokeTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void UseStopScan_RoundTrip_ReturnsMemoryToKernel()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("smoke", 8 * s_page);
        using var range = new ShrinkablePageRange(region, 0, 8, shrinker);
        range.UseRange(1, 4);
        Assert.Equal(3 * s_page, region.ResidentBytes);
        range.Write(s_page, 42L);
        Assert.Equal(42L, range.Read<long>(s_page));
        range.StopUsingRange(1, 4);
        Assert.Equal(PageState.Available, range.GetPageState(1));
        Assert.Equal(3, shrinker.Count());
        Assert.Throws<PageNotInUseException>(() => range.Read<long>(s_page));
        Assert.Equal(3, shrinker.Scan(10));
        Assert.Equal(0, region.ResidentBytes);
        Assert.Equal(PageState.Free, range.GetPageState(1));
    }
}
