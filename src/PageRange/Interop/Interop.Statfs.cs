using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    /// <summary><c>f_type</c> of tmpfs and of the internal shmem mount every ordinary memfd lives on.</summary>
    internal const long TMPFS_MAGIC = 0x01021994;

    /// <summary><c>f_type</c> of hugetlbfs, where <c>MFD_HUGETLB</c> memfds live.</summary>
    internal const long HUGETLBFS_MAGIC = 0x958458f6;

    /// <summary>
    /// The leading field of <c>struct statfs</c>: <c>f_type</c>, a native long at offset 0 on every 64-bit Linux
    /// architecture (the generic layout and x86-64's agree there). The size covers the whole structure (120 bytes on
    /// x86-64 and arm64) with room to spare.
    /// </summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    internal struct StatFs
    {
        [FieldOffset(0)] public long Type;
    }

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "fstatfs", SetLastError = true)]
        internal static unsafe partial int Fstatfs(SafeMemfdHandle fd, StatFs* buffer);
    }

    /// <summary>The magic number of the file system <paramref name="fd"/> lives on (<c>fstatfs</c>'s <c>f_type</c>).</summary>
    internal static unsafe long GetFileSystemType(SafeMemfdHandle fd)
    {
        StatFs stat = default;
        // SAFETY: &stat points at a 256-byte local, larger than struct statfs, for the call's duration.
        if (Libc.Fstatfs(fd, &stat) != 0)
        {
            throw GetLastErrorException("fstatfs");
        }
        return stat.Type;
    }
}
