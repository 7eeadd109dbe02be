using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const int EINTR = 4;
    internal const int EAGAIN = 11;
    internal const int ENOMEM = 12;
    internal const int EINVAL = 22;
    internal const int ENOSPC = 28;
    internal const int ETIMEDOUT = 110;

    /// <summary>Reads errno of the last P/Invoke and turns it into the exception for <paramref name="syscall"/>.</summary>
    internal static Exception GetLastErrorException(string syscall) =>
        GetExceptionForErrno(Marshal.GetLastPInvokeError(), syscall);

    /// <summary>The single place where an errno becomes a typed exception naming its system call.</summary>
    internal static Exception GetExceptionForErrno(int errno, string syscall)
    {
        string message = $"{syscall} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno}).";
        return errno switch
        {
            ENOMEM or ENOSPC => new BackingAllocationException(syscall, errno, message),
            _ => new SystemCallException(syscall, errno, message),
        };
    }
}
