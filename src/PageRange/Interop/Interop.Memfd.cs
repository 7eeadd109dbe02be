using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const uint MFD_CLOEXEC = 0x0001;
    internal const uint MFD_ALLOW_SEALING = 0x0002;

    internal const int F_GETFD = 1;
    internal const int FD_CLOEXEC = 1;
    internal const int F_DUPFD_CLOEXEC = 1030;
    internal const int F_ADD_SEALS = 1033;
    internal const int F_GET_SEALS = 1034;
    internal const uint MFD_HUGETLB = 0x0004;
    internal const int F_SEAL_SEAL = 0x0001;
    internal const int F_SEAL_SHRINK = 0x0002;
    internal const int F_SEAL_GROW = 0x0004;
    internal const int F_SEAL_WRITE = 0x0008;
    internal const int F_SEAL_FUTURE_WRITE = 0x0010;
    internal const int F_SEAL_EXEC = 0x0020;

    internal const int AT_EMPTY_PATH = 0x1000;
    internal const uint STATX_SIZE = 0x0200;
    internal const uint STATX_BLOCKS = 0x0400;

    /// <summary>The leading fields of <c>struct statx</c>; the kernel's layout is the same on every architecture.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    internal struct StatX
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(40)] public ulong Size;
        [FieldOffset(48)] public ulong Blocks;
    }

    internal static partial class Libc
    {
        // Returns int, as the C function does, not a SafeHandle: a SafeHandle return is marshalled as a pointer-sized
        // value, and the upper half of the register is not sign-extended, so -1 would arrive as 0xFFFFFFFF and pass
        // for a valid descriptor.
        [LibraryImport(Libraries.Libc, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int MemfdCreate(string name, uint flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "ftruncate", SetLastError = true)]
        internal static partial int Ftruncate(SafeMemfdHandle fd, long length);

        [LibraryImport(Libraries.Libc, EntryPoint = "fcntl", SetLastError = true)]
        internal static partial int Fcntl(SafeMemfdHandle fd, int cmd, int arg);

        // statx rather than fstat: struct stat differs between x64 and arm64, struct statx does not.
        [LibraryImport(Libraries.Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static unsafe partial int Statx(SafeMemfdHandle dirfd, string path, int flags, uint mask, StatX* buffer);

        [LibraryImport(Libraries.Libc, EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(nint fd);
    }

    /// <summary>Creates a close-on-exec, sealable memfd.</summary>
    internal static SafeMemfdHandle MemfdCreate(string name) => MemfdCreate(name, extraFlags: 0);

    /// <summary>Creates a close-on-exec, sealable memfd with <paramref name="extraFlags"/> too (tests: <c>MFD_HUGETLB</c>).</summary>
    internal static SafeMemfdHandle MemfdCreate(string name, uint extraFlags) =>
        OwnDescriptor(Libc.MemfdCreate(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | extraFlags), "memfd_create");

    internal static void Ftruncate(SafeMemfdHandle fd, long length)
    {
        if (Libc.Ftruncate(fd, length) != 0)
        {
            throw GetLastErrorException("ftruncate");
        }
    }

    internal static void AddSeals(SafeMemfdHandle fd, int seals)
    {
        if (Libc.Fcntl(fd, F_ADD_SEALS, seals) != 0)
        {
            throw GetLastErrorException("fcntl(F_ADD_SEALS)");
        }
    }

    internal static int GetSeals(SafeMemfdHandle fd)
    {
        int seals = Libc.Fcntl(fd, F_GET_SEALS, 0);
        if (seals < 0)
        {
            throw GetLastErrorException("fcntl(F_GET_SEALS)");
        }
        return seals;
    }

    /// <summary>Size and backed bytes of a file, as the kernel counts them (<c>st_size</c>, <c>st_blocks * 512</c>).</summary>
    internal static unsafe (long Size, long AllocatedBytes) Fstat(SafeMemfdHandle fd)
    {
        StatX stat = default;
        // SAFETY: &stat points at a 256-byte local, the full size of struct statx, for the call's duration.
        if (Libc.Statx(fd, string.Empty, AT_EMPTY_PATH, STATX_SIZE | STATX_BLOCKS, &stat) != 0)
        {
            throw GetLastErrorException("fstat");
        }
        return ((long)stat.Size, (long)stat.Blocks * 512);
    }

    /// <summary>A second descriptor for the same open file, close-on-exec like every descriptor we create.</summary>
    internal static SafeMemfdHandle Dup(SafeMemfdHandle fd) =>
        // F_DUPFD_CLOEXEC, not dup: a plain dup clears close-on-exec, and the copy would leak into every child we start.
        OwnDescriptor(Libc.Fcntl(fd, F_DUPFD_CLOEXEC, 0), "fcntl(F_DUPFD_CLOEXEC)");
}

internal static partial class Interop
{
    internal const int O_RDWR = 0x0002;
    internal const int O_CLOEXEC = 0x80000;

    internal static partial class Libc
    {
        // Returns int, not a SafeHandle, for the reason given at MemfdCreate.
        [LibraryImport(Libraries.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int Open(string path, int flags);
    }

    /// <summary>Opens a path read-write and close-on-exec, e.g. <c>/proc/&lt;pid&gt;/fd/&lt;n&gt;</c> of another process's memfd.</summary>
    internal static SafeMemfdHandle OpenReadWrite(string path) =>
        OwnDescriptor(Libc.Open(path, O_RDWR | O_CLOEXEC), "open");

    /// <summary>Wraps the descriptor a system call returned, or throws the exception for its errno if it returned -1.</summary>
    private static SafeMemfdHandle OwnDescriptor(int fd, string syscall)
    {
        if (fd < 0)
        {
            throw GetLastErrorException(syscall);
        }
        return new SafeMemfdHandle(fd, ownsHandle: true);
    }
}
