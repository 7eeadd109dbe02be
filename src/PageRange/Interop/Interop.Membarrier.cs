using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    private const int MEMBARRIER_CMD_QUERY = 0;
    private const int MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1;
    private const int MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2;

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long SyscallMembarrier(long number, int command, uint flags, int cpuId);
    }

    private static long SysMembarrier => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 324,
        Architecture.Arm64 => 283,
        _ => -1,
    };

    /// <summary>
    /// Whether the kernel offers <c>MEMBARRIER_CMD_GLOBAL_EXPEDITED</c> and lets this process issue it (a seccomp filter
    /// may refuse it: one real call is made to find out).
    /// </summary>
    internal static bool CanIssueGlobalExpeditedMembarrier() => TryMembarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);

    /// <summary>
    /// Registers this process for <c>MEMBARRIER_CMD_GLOBAL_EXPEDITED</c>: from now on every running thread of it executes
    /// a full memory barrier whenever any process issues that command (threads not running get one from the context
    /// switch). Once per process; it cannot be undone.
    /// </summary>
    /// <returns>Whether the kernel registered the process.</returns>
    internal static bool TryRegisterGlobalExpeditedMembarrier() => TryMembarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);

    /// <summary>Whether the kernel lists <paramref name="command"/> and carries it out now; no error either way.</summary>
    private static bool TryMembarrier(int command)
    {
        if (SysMembarrier < 0)
        {
            return false;
        }
        long commands = Libc.SyscallMembarrier(SysMembarrier, MEMBARRIER_CMD_QUERY, 0, 0);
        return commands >= 0 && (commands & command) != 0 && Libc.SyscallMembarrier(SysMembarrier, command, 0, 0) == 0;
    }

    /// <summary>
    /// A full memory barrier on every running thread of every process registered with
    /// <see cref="TryRegisterGlobalExpeditedMembarrier"/> (an inter-processor interrupt to their CPUs), returning once
    /// all have executed it.
    /// </summary>
    /// <exception cref="SystemCallException">The kernel refused (after <see cref="CanIssueGlobalExpeditedMembarrier"/> said it would not).</exception>
    internal static void GlobalExpeditedMembarrier()
    {
        if (Libc.SyscallMembarrier(SysMembarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) != 0)
        {
            throw GetLastErrorException("membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)");
        }
    }
}
