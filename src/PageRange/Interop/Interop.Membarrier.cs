using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    // include/uapi/linux/membarrier.h (kernel 4.16 for the GLOBAL_EXPEDITED pair).
    internal const int MEMBARRIER_CMD_QUERY = 0;
    internal const int MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1;
    internal const int MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2;

    internal static partial class Libc
    {
        // The arguments are longs because syscall(2) reads every argument as a long; the kernel truncates them to the
        // int/unsigned int membarrier declares.
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long SyscallMembarrier(long number, long command, long flags, long cpuId);
    }

    private static long SysMembarrier => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 324,
        Architecture.Arm64 => 283,
        _ => -1,
    };

    /// <summary>
    /// Registers this process for <c>MEMBARRIER_CMD_GLOBAL_EXPEDITED</c> if the kernel offers both commands: from then
    /// on every running thread of this process executes a full barrier whenever any process issues that command.
    /// </summary>
    /// <returns>Whether the process is registered. <see langword="false"/> is not an error: an older kernel (no
    /// <c>membarrier</c>, or no expedited global command), a seccomp filter (<c>ENOSYS</c>/<c>EPERM</c>), another
    /// architecture: the caller keeps its full fences.</returns>
    internal static bool TryRegisterGlobalExpeditedMembarrier()
    {
        long number = SysMembarrier;
        if (number < 0 || !OperatingSystem.IsLinux())
        {
            return false;
        }
        long commands = Libc.SyscallMembarrier(number, MEMBARRIER_CMD_QUERY, 0, 0);
        const long Needed = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
        if (commands < 0 || (commands & Needed) != Needed)
        {
            return false;
        }
        return Libc.SyscallMembarrier(number, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
    }

    /// <summary>
    /// <c>membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)</c>: returns once every running thread of every registered process
    /// has executed a full memory barrier (a thread that is not running is ordered by the context switch that stopped it).
    /// </summary>
    /// <remarks>Only after <see cref="TryRegisterGlobalExpeditedMembarrier"/> returned <see langword="true"/>: the kernel
    /// then has the command, so a failure here is an error.</remarks>
    /// <exception cref="SystemCallException">The kernel refused the command.</exception>
    internal static void MembarrierGlobalExpedited()
    {
        if (Libc.SyscallMembarrier(SysMembarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
        {
            throw GetLastErrorException("membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)");
        }
    }
}
