using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const int FALLOC_FL_KEEP_SIZE = 0x01;
    internal const int FALLOC_FL_PUNCH_HOLE = 0x02;

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "fallocate", SetLastError = true)]
        internal static partial int Fallocate(SafeMemfdHandle fd, int mode, long offset, long length);
    }

    /// <summary>Backs <c>[offset, offset+length)</c> with zeroed memory now, so a later touch cannot take SIGBUS.</summary>
    /// <exception cref="BackingAllocationException">The kernel has no memory for it (ENOMEM, ENOSPC).</exception>
    internal static void Allocate(SafeMemfdHandle fd, long offset, long length) =>
        Fallocate(fd, 0, offset, length, "fallocate");

    /// <summary>Gives <c>[offset, offset+length)</c> back to the kernel; the bytes then read as zeros.</summary>
    internal static void PunchHole(SafeMemfdHandle fd, long offset, long length) =>
        Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length, "fallocate(PUNCH_HOLE)");

    private static void Fallocate(SafeMemfdHandle fd, int mode, long offset, long length, string syscall)
    {
        int result;
        do
        {
            result = Libc.Fallocate(fd, mode, offset, length);
        }
        while (result != 0 && Marshal.GetLastPInvokeError() == EINTR);
        if (result != 0)
        {
            throw GetLastErrorException(syscall);
        }
    }
}
