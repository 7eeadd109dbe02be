using PageRange.Memory;

namespace PageRange.Tests.Memory;

public sealed class InteropMemfdTests
{
    [Fact]
    public void Dup_Memfd_CopyIsCloseOnExec()
    {
        using var region = SharedRegion.Create("test", SharedRegion.PageSize);
        using SafeMemfdHandle copy = Interop.Dup(region.Handle);

        // A copy without FD_CLOEXEC would be inherited by every child process started while it is open.
        int flags = Interop.Libc.Fcntl(copy, Interop.F_GETFD, 0);
        Assert.True(flags >= 0, "fcntl(F_GETFD) failed.");
        Assert.Equal(Interop.FD_CLOEXEC, flags & Interop.FD_CLOEXEC);
        Assert.NotEqual(region.Handle.Fd, copy.Fd);
    }

    [Fact]
    public void Dup_Memfd_CopySharesTheFile()
    {
        using var region = SharedRegion.Create("test", 2 * SharedRegion.PageSize);
        using SafeMemfdHandle copy = Interop.Dup(region.Handle);
        Assert.Equal(2L * SharedRegion.PageSize, Interop.Fstat(copy).Size);
    }

    [Fact]
    public void MemfdCreate_Descriptor_IsCloseOnExec()
    {
        using SafeMemfdHandle fd = Interop.MemfdCreate("test");
        int flags = Interop.Libc.Fcntl(fd, Interop.F_GETFD, 0);
        Assert.Equal(Interop.FD_CLOEXEC, flags & Interop.FD_CLOEXEC);
    }

    [Fact]
    public void OpenReadWrite_MissingPath_ThrowsSystemCallExceptionNamingOpen()
    {
        SystemCallException error = Assert.ThrowsAny<SystemCallException>(
            () => Interop.OpenReadWrite("/nonexistent/pagerange-test"));
        Assert.Equal("open", error.SystemCall);
        Assert.Equal(2, error.Errno);
    }

    [Fact]
    public void MemfdCreate_NameTooLong_ThrowsSystemCallExceptionNamingMemfdCreate()
    {
        // The kernel refuses names over 249 bytes with EINVAL; the failure must surface, not pass for descriptor 0xFFFFFFFF.
        SystemCallException error = Assert.ThrowsAny<SystemCallException>(() => Interop.MemfdCreate(new string('x', 300)));
        Assert.Equal("memfd_create", error.SystemCall);
        Assert.Equal(Interop.EINVAL, error.Errno);
    }
}
