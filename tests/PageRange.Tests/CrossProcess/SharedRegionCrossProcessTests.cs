using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// A second real process maps our region through <c>/proc/&lt;pid&gt;/fd/&lt;fd&gt;</c> (a new descriptor of the same
/// memfd, as SCM_RIGHTS would give it), sees what we write, sees zeros once the shrinker reclaims, and refuses a
/// region that is not sealed or not the announced size.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class SharedRegionCrossProcessTests(ITestOutputHelper output)
{
    private const int Pages = 4;
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void MapRegion_SecondProcess_SeesWritesAndZerosAfterReclaim()
    {
        var shrinker = new Shrinker();
        using var region = SharedRegion.Create("cross-process", Pages * s_page);
        using var range = new ShrinkablePageRange(region, 0, Pages, shrinker);
        range.UseRange(0, 2);
        range.Write(s_page - 4, 0x1122334455667788UL);

        using var host = TestHostProcess.Start(output, "map-region",
            Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            region.Handle.Fd.ToString(System.Globalization.CultureInfo.InvariantCulture),
            region.Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("ok", host.ReadUntil("mapped: "));

        // Little-endian bytes of the value, straddling the boundary of pages 0 and 1.
        Assert.Equal("8877665544332211", Read(host, s_page - 4, 8));

        // A write after the peer mapped the region is visible too: one memory, not a copy.
        range.Write(s_page + 100, 0xCAFEu);
        Assert.Equal("FECA0000", Read(host, s_page + 100, 4));

        // Reclaim: the peer's reads of those pages now see zeros, and the kernel holds no memory for them.
        range.StopUsingRange(0, 2);
        Assert.Equal(2, shrinker.Scan(Pages));
        Assert.Equal(0, region.ResidentBytes);
        Assert.Equal(new string('0', 16), Read(host, s_page - 4, 8));
        // Unlike binder (SIGBUS), a read of a reclaimed page succeeds, and shmem backs a hole on any fault of a
        // shared mapping, reads included: the peer's read of two Free pages made them resident again. A receiver
        // reads only live buffers (Used pages), so only a misbehaving peer costs memory this way.
        Assert.Equal(2 * s_page, region.ResidentBytes);

        // Backed again: zero-filled, and written bytes show up once more; the books and the kernel agree again.
        range.UseRange(0, 2);
        Assert.Equal(2 * s_page, region.ResidentBytes);
        range.Write(0, 0x7Fu);
        Assert.Equal("7F000000", Read(host, 0, 4));
        range.StopUsingRange(0, 2);
        Assert.Equal(2, shrinker.Scan(Pages));
        Assert.Equal(0, region.ResidentBytes);

        host.WriteLine("quit");
        Assert.Equal(0, host.WaitForExit());
    }

    [Fact]
    public void MapRegion_WrongSize_SecondProcessRefusesIt()
    {
        using var region = SharedRegion.Create("cross-process-size", Pages * s_page);
        string error = MapAndExpectRefusal(region.Handle, 2 * Pages * s_page);
        Assert.Contains("ProtocolViolationException", error, StringComparison.Ordinal);
        Assert.Contains($"{Pages * s_page} bytes but {2 * Pages * s_page} were announced", error, StringComparison.Ordinal);
    }

    [Fact]
    public void MapRegion_Unsealed_SecondProcessRefusesIt()
    {
        using SafeMemfdHandle unsealed = Interop.MemfdCreate("cross-process-unsealed");
        Interop.Ftruncate(unsealed, Pages * s_page);
        string error = MapAndExpectRefusal(unsealed, Pages * s_page);
        Assert.Contains("ProtocolViolationException", error, StringComparison.Ordinal);
        Assert.Contains("not sealed against resizing", error, StringComparison.Ordinal);
    }

    private string MapAndExpectRefusal(SafeMemfdHandle fd, long announcedSize)
    {
        using var host = TestHostProcess.Start(output, "map-region",
            Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            fd.Fd.ToString(System.Globalization.CultureInfo.InvariantCulture),
            announcedSize.ToString(System.Globalization.CultureInfo.InvariantCulture));
        string error = host.ReadUntil("error: ");
        Assert.Equal(1, host.WaitForExit());
        return error;
    }

    private static string Read(TestHostProcess host, long offset, int length)
    {
        host.WriteLine($"read {offset} {length}");
        return host.ReadUntil("bytes: ");
    }
}
