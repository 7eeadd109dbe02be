using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    // Not FUTEX_PRIVATE_FLAG: the word lives in a MAP_SHARED mapping and the waker is another process.
    internal const int FUTEX_WAIT = 0;
    internal const int FUTEX_WAKE = 1;

    [StructLayout(LayoutKind.Sequential)]
    internal struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static unsafe partial long Syscall(long number, int* address, int op, int value, Timespec* timeout, nint address2, int value3);
    }

    private static long SysFutex => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 202,
        Architecture.Arm64 => 98,
        _ => throw new PlatformNotSupportedException(
            "PageRange's futex doorbell knows the system call number only for Linux x64 and arm64."),
    };

    /// <summary>Waits while <c>*address == expected</c>, at most <paramref name="timeout"/>.</summary>
    /// <returns><see langword="true"/> if woken or the word had already changed; <see langword="false"/> on timeout.</returns>
    /// <remarks>Safety: <paramref name="address"/> is 4-byte aligned and stays mapped for the call.</remarks>
    internal static unsafe bool FutexWait(int* address, int expected, TimeSpan timeout)
    {
        long ticks = Math.Max(0, timeout.Ticks);
        Timespec spec = new() { Seconds = ticks / TimeSpan.TicksPerSecond, Nanoseconds = ticks % TimeSpan.TicksPerSecond * 100 };
        // SAFETY: the caller guarantees address is mapped and aligned; &spec is a live local.
        long result = Libc.Syscall(SysFutex, address, FUTEX_WAIT, expected, &spec, 0, 0);
        if (result == 0)
        {
            return true;
        }
        int errno = Marshal.GetLastPInvokeError();
        return errno switch
        {
            EAGAIN or EINTR => true,
            ETIMEDOUT => false,
            _ => throw GetExceptionForErrno(errno, "futex(FUTEX_WAIT)"),
        };
    }

    /// <summary>Wakes up to <paramref name="count"/> waiters on <paramref name="address"/>.</summary>
    /// <remarks>Safety: <paramref name="address"/> is 4-byte aligned and stays mapped for the call.</remarks>
    internal static unsafe int FutexWake(int* address, int count)
    {
        // SAFETY: the caller guarantees address is mapped and aligned; FUTEX_WAKE ignores the timeout.
        long result = Libc.Syscall(SysFutex, address, FUTEX_WAKE, count, null, 0, 0);
        if (result < 0)
        {
            throw GetLastErrorException("futex(FUTEX_WAKE)");
        }
        return (int)result;
    }
}
