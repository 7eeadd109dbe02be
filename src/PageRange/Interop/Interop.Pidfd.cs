using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    // SO_PEERPIDFD (Linux 6.5): a pidfd of the peer as of connect()/listen(), taken by the kernel with the credentials,
    // so it cannot name a process that reused the pid since.
    internal const int SO_PEERPIDFD = 77;
    internal const short POLLIN = 0x001;

    /// <summary><c>struct pollfd</c>: 0 fd | 4 events | 6 revents, 8 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct PollFd
    {
        public int Fd;
        public short Events;
        public short ReturnedEvents;
    }

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "syscall", SetLastError = true)]
        internal static partial long SyscallPidfdOpen(long number, int pid, uint flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "poll", SetLastError = true)]
        internal static unsafe partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);
    }

    // pidfd_open came after the architectures unified their numbering: 434 on x64 and arm64 alike.
    private const long SysPidfdOpen = 434;

    /// <summary>
    /// A pidfd for the peer of a connected Unix socket: <c>SO_PEERPIDFD</c> where the kernel has it, else
    /// <c>pidfd_open</c> of <paramref name="pid"/> (its <c>SO_PEERCRED</c> pid, read just before).
    /// </summary>
    /// <returns>The pidfd, or <see langword="null"/> when the process cannot be watched: it is gone already (ESRCH), the
    /// kernel has no pidfds (ENOSYS), or it is not ours to see (EPERM, another pid namespace).</returns>
    internal static SafeMemfdHandle? TryOpenPeerPidfd(Socket socket, int pid)
    {
        Span<byte> value = stackalloc byte[sizeof(int)];
        try
        {
            if (socket.GetRawSocketOption(SOL_SOCKET, SO_PEERPIDFD, value) == sizeof(int))
            {
                int fd = BitConverter.ToInt32(value);
                if (fd >= 0)
                {
                    return new SafeMemfdHandle(fd, ownsHandle: true);
                }
            }
        }
        catch (SocketException)
        {
            // ENOPROTOOPT before Linux 6.5, or ESRCH when the peer is gone already: try pidfd_open, which tells which.
        }
        long result = Libc.SyscallPidfdOpen(SysPidfdOpen, pid, 0);
        return result >= 0 ? new SafeMemfdHandle((nint)result, ownsHandle: true) : null;
    }

    /// <summary>Whether the process behind <paramref name="pidfd"/> has exited: a pidfd polls readable once it has.</summary>
    internal static unsafe bool HasProcessExited(SafeMemfdHandle pidfd)
    {
        bool added = false;
        try
        {
            pidfd.DangerousAddRef(ref added);
            PollFd entry = new() { Fd = pidfd.Fd, Events = POLLIN };
            int result;
            do
            {
                // SAFETY: entry is a live local; the pidfd is AddRef'd, so its number is not closed and reused meanwhile.
                result = Libc.Poll(&entry, 1, 0);
            }
            while (result < 0 && Marshal.GetLastPInvokeError() == EINTR);
            return result > 0 && (entry.ReturnedEvents & POLLIN) != 0;
        }
        finally
        {
            if (added)
            {
                pidfd.DangerousRelease();
            }
        }
    }
}
