using PageRange.Memory;

namespace PageRange.Tests.Memory;

public sealed class SharedRegionTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void Create_NewRegion_HasNoResidentBytes()
    {
        using var region = SharedRegion.Create("test", 16 * s_page);
        Assert.Equal(16 * s_page, region.Size);
        Assert.Equal(0, region.ResidentBytes);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-4096)]
    [InlineData(100)]
    public void Create_BadSize_ThrowsArgumentException(long size) =>
        Assert.ThrowsAny<ArgumentException>(() => SharedRegion.Create("test", size));

    [Fact]
    public void Create_BeyondMaximum_ThrowsArgumentOutOfRange() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => SharedRegion.Create("test", 4 * s_page, maxSize: 2 * s_page));

    [Fact]
    public void Create_EmptyName_ThrowsArgumentException() =>
        Assert.ThrowsAny<ArgumentException>(() => SharedRegion.Create("", s_page));

    [Fact]
    public void Create_Region_IsSealedAgainstResizing()
    {
        using var region = SharedRegion.Create("test", 4 * s_page);
        int seals = Interop.GetSeals(region.Handle);
        Assert.Equal(SharedRegion.RequiredSeals, seals & SharedRegion.RequiredSeals);
        SystemCallException error = Assert.ThrowsAny<SystemCallException>(() => Interop.Ftruncate(region.Handle, s_page));
        Assert.Equal("ftruncate", error.SystemCall);
    }

    [Fact]
    public void AllocateAndPunchHole_ChangeResidentBytesByExactlyThePages()
    {
        using var region = SharedRegion.Create("test", 8 * s_page);
        region.Allocate(2 * s_page, 3 * s_page);
        Assert.Equal(3 * s_page, region.ResidentBytes);
        region.GetSpan(2 * s_page, s_page).Fill(0xAB);
        region.PunchHole(3 * s_page, s_page);
        Assert.Equal(2 * s_page, region.ResidentBytes);
        Assert.True(region.GetSpan(3 * s_page, s_page).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0xAB, region.GetSpan(2 * s_page, 1)[0]);
    }

    [Fact]
    public void Allocate_FaultInjected_ThrowsBackingAllocationException()
    {
        using var region = SharedRegion.Create("test", 4 * s_page);
        region.AllocationFaultInjector = offset => offset == s_page;
        region.Allocate(0, s_page);
        BackingAllocationException error = Assert.Throws<BackingAllocationException>(() => region.Allocate(s_page, s_page));
        Assert.Equal("fallocate", error.SystemCall);
        Assert.Equal(Interop.ENOSPC, error.Errno);
        Assert.Equal(s_page, region.ResidentBytes);
    }

    [Fact]
    public void Open_DescriptorOfSameFile_SeesTheSameBytes()
    {
        using var region = SharedRegion.Create("test", 4 * s_page);
        region.Allocate(0, s_page);
        region.GetSpan(0, 4).Fill(7);
        using var view = SharedRegion.Open(Interop.Dup(region.Handle), region.Size, writableBytes: region.Size);
        Assert.Equal(7, view.GetSpan(0, 4)[3]);
    }

    [Fact]
    public void Open_WrongSize_ThrowsProtocolViolation()
    {
        using var region = SharedRegion.Create("test", 4 * s_page);
        var error = Assert.Throws<ProtocolViolationException>(
            () => SharedRegion.Open(Interop.Dup(region.Handle), 8 * s_page, 8 * s_page));
        Assert.Contains("announced", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_UnsealedMemfd_ThrowsProtocolViolation()
    {
        using SafeMemfdHandle fd = Interop.MemfdCreate("unsealed");
        Interop.Ftruncate(fd, 4 * s_page);
        var error = Assert.Throws<ProtocolViolationException>(
            () => SharedRegion.Open(Interop.Dup(fd), 4 * s_page, 4 * s_page));
        Assert.Contains("sealed", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dispose_ThenResidentBytes_ThrowsObjectDisposed()
    {
        var region = SharedRegion.Create("test", s_page);
        region.Dispose();
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.ResidentBytes);
    }
}
