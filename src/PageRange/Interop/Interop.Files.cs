using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const int AT_FDCWD = -100;
    internal const int AT_SYMLINK_NOFOLLOW = 0x100;
    internal const uint STATX_TYPE = 0x0001;
    internal const uint STATX_MODE = 0x0002;
    internal const uint STATX_UID = 0x0008;
    internal const int S_IFMT = 0xF000;
    internal const int S_IFDIR = 0x4000;
    internal const int S_IFSOCK = 0xC000;
    internal const int O_CREAT = 0x40;
    internal const int O_NOFOLLOW = 0x20000;
    internal const int LOCK_EX = 2;
    internal const int LOCK_NB = 4;
    internal const int ENOENT = 2;

    /// <summary>The leading fields of <c>struct statx</c> a path's owner check needs: 20 uid | 24 gid | 28 mode (u16).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    internal struct StatXOwner
    {
        [FieldOffset(0)] public uint Mask;
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(28)] public ushort Mode;
    }

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static unsafe partial int StatxPath(int dirfd, string path, int flags, uint mask, StatXOwner* buffer);

        // Returns int, not a SafeHandle, for the reason given at MemfdCreate.
        [LibraryImport(Libraries.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial int OpenCreate(string path, int flags, uint mode);

        [LibraryImport(Libraries.Libc, EntryPoint = "flock", SetLastError = true)]
        internal static partial int Flock(SafeMemfdHandle fd, int operation);
    }

    /// <summary>The owner and mode of <paramref name="path"/> itself (a symbolic link is not followed).</summary>
    /// <returns><see langword="null"/> if nothing is at the path.</returns>
    internal static unsafe (uint Uid, int Mode)? GetOwnerAndMode(string path)
    {
        StatXOwner stat = default;
        // SAFETY: &stat points at a 256-byte local, the full size of struct statx, for the call's duration.
        if (Libc.StatxPath(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID, &stat) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            return errno == ENOENT ? null : throw GetExceptionForErrno(errno, "statx");
        }
        return (stat.Uid, stat.Mode);
    }

    /// <summary>Opens (creating it with mode 0600 if missing) a lock file, never through a symbolic link.</summary>
    internal static SafeMemfdHandle OpenLockFile(string path) =>
        OwnDescriptor(Libc.OpenCreate(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0x180), "open");

    /// <summary>Takes an exclusive <c>flock</c> without waiting; held until the descriptor is closed (also by a crash).</summary>
    /// <returns><see langword="false"/> if another open file description holds it.</returns>
    internal static bool TryLockExclusive(SafeMemfdHandle fd)
    {
        if (Libc.Flock(fd, LOCK_EX | LOCK_NB) == 0)
        {
            return true;
        }
        int errno = Marshal.GetLastPInvokeError();
        return errno == EAGAIN ? false : throw GetExceptionForErrno(errno, "flock");
    }
}
