using PageRange.Memory;

namespace PageRange.Tests.Memory;

/// <summary>
/// A region carries exactly F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, and a peer's descriptor is accepted only with
/// exactly that set and only on tmpfs/shmem: anything else is a typed error before anything is mapped.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class SharedRegionSealTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void Create_Region_CarriesExactlyTheRequiredSealsAndNoSealCanBeAdded()
    {
        using var region = SharedRegion.Create("seals-exact", 4L * s_page);
        Assert.Equal(Interop.F_SEAL_SHRINK | Interop.F_SEAL_GROW | Interop.F_SEAL_SEAL, Interop.GetSeals(region.Handle) & ~Interop.F_SEAL_EXEC);
        Assert.Equal(Interop.TMPFS_MAGIC, Interop.GetFileSystemType(region.Handle));
        // F_SEAL_SEAL: nobody holding the descriptor can add a write seal to stop the writer's stores and punches.
        Assert.Throws<SystemCallException>(() => Interop.AddSeals(region.Handle, Interop.F_SEAL_FUTURE_WRITE));
        Assert.Throws<SystemCallException>(() => Interop.AddSeals(region.Handle, Interop.F_SEAL_WRITE));

        using SharedRegion view = SharedRegion.Open(Interop.Dup(region.Handle), region.Size, region.Size);
        Assert.Equal(region.Size, view.Size);
    }

    [Theory]
    [InlineData(Interop.F_SEAL_SHRINK | Interop.F_SEAL_GROW)]
    [InlineData(Interop.F_SEAL_SHRINK | Interop.F_SEAL_SEAL)]
    [InlineData(Interop.F_SEAL_SHRINK | Interop.F_SEAL_GROW | Interop.F_SEAL_FUTURE_WRITE | Interop.F_SEAL_SEAL)]
    [InlineData(Interop.F_SEAL_SHRINK | Interop.F_SEAL_GROW | Interop.F_SEAL_WRITE | Interop.F_SEAL_SEAL)]
    public void Open_PeerMemfdWithAnotherSealSet_ThrowsProtocolViolationAndClosesIt(int seals)
    {
        using SafeMemfdHandle fd = Interop.MemfdCreate("seals-hostile");
        Interop.Ftruncate(fd, 4L * s_page);
        Interop.AddSeals(fd, seals);
        SafeMemfdHandle given = Interop.Dup(fd);

        var error = Assert.Throws<ProtocolViolationException>(() => SharedRegion.Open(given, 4L * s_page, 4L * s_page));

        Assert.Contains("F_SEAL_SEAL", error.Message, StringComparison.Ordinal);
        Assert.True(given.IsClosed, "a refused descriptor is closed at once");
    }

    [Fact]
    public void Open_DiskFile_ThrowsProtocolViolation()
    {
        string path = Path.Combine(AppContext.BaseDirectory, $"not-a-memfd-{Guid.NewGuid():N}");
        try
        {
            using (FileStream file = File.Create(path))
            {
                file.SetLength(4L * s_page);
            }
            SafeMemfdHandle given = Interop.OpenReadWrite(path);
            bool onTmpfs = Interop.GetFileSystemType(given) == Interop.TMPFS_MAGIC;

            var error = Assert.Throws<ProtocolViolationException>(() => SharedRegion.Open(given, 4L * s_page, 4L * s_page));

            // On disk the file system refuses it; a regular tmpfs file has no memfd seals, which refuses it too.
            Assert.Contains(onTmpfs ? "F_SEAL_SEAL" : "not a tmpfs/shmem memfd", error.Message, StringComparison.Ordinal);
            Assert.True(given.IsClosed);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Open_HugetlbfsMemfd_ThrowsProtocolViolationNamingHugetlbfs()
    {
        SafeMemfdHandle given;
        try
        {
            given = Interop.MemfdCreate("seals-huge", Interop.MFD_HUGETLB);
        }
        catch (SystemCallException)
        {
            // A kernel without hugetlbfs cannot hand us such a descriptor, so there is nothing to refuse.
            return;
        }
        Assert.Equal(Interop.HUGETLBFS_MAGIC, Interop.GetFileSystemType(given));

        var error = Assert.Throws<ProtocolViolationException>(() => SharedRegion.Open(given, 2L << 20, 2L << 20));

        Assert.Contains("hugetlbfs", error.Message, StringComparison.Ordinal);
        Assert.True(given.IsClosed);
    }
}
