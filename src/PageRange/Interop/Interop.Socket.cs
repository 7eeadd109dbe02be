using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace PageRange;

internal static partial class Interop
{
    internal const int SOL_SOCKET = 1;
    internal const int SO_PEERCRED = 17;
    internal const int SCM_RIGHTS = 1;

    internal const int MSG_CTRUNC = 0x08;
    internal const int MSG_DONTWAIT = 0x40;
    internal const int MSG_NOSIGNAL = 0x4000;
    internal const int MSG_CMSG_CLOEXEC = 0x40000000;

    /// <summary><c>struct iovec</c>: one buffer of a scatter/gather list.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>
    /// <c>struct msghdr</c> as glibc lays it out on LP64 (x64 and arm64 alike): 0 name | 8 namelen (u32, then 4 bytes
    /// of padding) | 16 iov | 24 iovlen | 32 control | 40 controllen | 48 flags | size 56. Sequential layout inserts the
    /// same padding the C compiler does, and a test pins every offset.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    internal unsafe struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    /// <summary><c>struct cmsghdr</c> on LP64: 0 len (size_t) | 8 level | 12 type | data at 16 (CMSG_ALIGN of the header).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct CmsgHdr
    {
        public nuint Length;
        public int Level;
        public int Type;
    }

    /// <summary><c>CMSG_ALIGN</c>: control data is aligned to <c>sizeof(size_t)</c>.</summary>
    internal static unsafe nuint CmsgAlign(nuint length) => (length + (nuint)sizeof(nuint) - 1) & ~((nuint)sizeof(nuint) - 1);

    /// <summary><c>CMSG_LEN</c>: the header plus <paramref name="dataLength"/> bytes, the value of <c>cmsg_len</c>.</summary>
    internal static unsafe nuint CmsgLen(nuint dataLength) => CmsgAlign((nuint)sizeof(CmsgHdr)) + dataLength;

    /// <summary><c>CMSG_SPACE</c>: the room one control message with <paramref name="dataLength"/> bytes takes in the buffer.</summary>
    internal static unsafe nuint CmsgSpace(nuint dataLength) => CmsgAlign((nuint)sizeof(CmsgHdr)) + CmsgAlign(dataLength);

    /// <summary>The control buffer for exactly one descriptor: 24 bytes on LP64.</summary>
    internal static nuint OneDescriptorControlSpace => CmsgSpace(sizeof(int));

    /// <summary>What <c>SO_PEERCRED</c> reports: the peer's pid, uid and gid as of its <c>connect</c> or <c>listen</c>.</summary>
    internal readonly record struct PeerCredentials(int Pid, uint Uid, uint Gid);

    internal static partial class Libc
    {
        [LibraryImport(Libraries.Libc, EntryPoint = "sendmsg", SetLastError = true)]
        internal static unsafe partial nint SendMsg(int socket, MsgHdr* message, int flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "recvmsg", SetLastError = true)]
        internal static unsafe partial nint RecvMsg(int socket, MsgHdr* message, int flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "geteuid")]
        internal static partial uint GetEUid();
    }

    /// <summary>The effective uid of this process, the one <c>SO_PEERCRED</c> shows our peers.</summary>
    internal static uint GetEffectiveUserId() => Libc.GetEUid();

    /// <summary>Reads <c>SO_PEERCRED</c> of a connected Unix socket.</summary>
    /// <exception cref="SocketException">The socket is not a connected Unix socket.</exception>
    internal static PeerCredentials GetPeerCredentials(Socket socket)
    {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }: three native-endian 32-bit words.
        Span<byte> credentials = stackalloc byte[12];
        int length = socket.GetRawSocketOption(SOL_SOCKET, SO_PEERCRED, credentials);
        if (length != credentials.Length)
        {
            throw new SocketException((int)SocketError.ProtocolOption);
        }
        return new PeerCredentials(
            BitConverter.ToInt32(credentials),
            BitConverter.ToUInt32(credentials[4..]),
            BitConverter.ToUInt32(credentials[8..]));
    }

    /// <summary>The most descriptors one <see cref="TrySendMessage(SafeSocketHandle, ReadOnlySpan{byte}, ReadOnlySpan{SafeMemfdHandle}, out int)"/> passes.</summary>
    internal const int MaxDescriptorsPerMessage = 4;

    /// <summary>
    /// Sends <paramref name="data"/> on a stream socket with <c>sendmsg</c>, attaching <paramref name="descriptor"/>
    /// with <c>SCM_RIGHTS</c> when it is not null. Never blocks and never raises SIGPIPE.
    /// </summary>
    /// <param name="socket">A connected Unix stream socket; borrowed for the call.</param>
    /// <param name="data">At least one byte: a stream socket carries descriptors only along with data.</param>
    /// <param name="descriptor">The descriptor to pass; borrowed for the call, still ours afterwards.</param>
    /// <param name="sent">The bytes the kernel took, possibly fewer than <paramref name="data"/> holds.</param>
    /// <returns><see langword="false"/> if the socket's send buffer is full now (EAGAIN) and nothing was sent.</returns>
    /// <exception cref="SystemCallException">sendmsg failed, e.g. EPIPE when the peer is gone.</exception>
    internal static bool TrySendMessage(SafeSocketHandle socket, ReadOnlySpan<byte> data, SafeMemfdHandle? descriptor, out int sent) =>
        descriptor is null
            ? TrySendMessage(socket, data, ReadOnlySpan<SafeMemfdHandle>.Empty, out sent)
            : TrySendMessage(socket, data, new ReadOnlySpan<SafeMemfdHandle>(in descriptor), out sent);

    /// <summary>
    /// Sends <paramref name="data"/> with up to <see cref="MaxDescriptorsPerMessage"/> descriptors in one <c>SCM_RIGHTS</c>
    /// message. The protocol passes one; tests pass more to prove the receiver refuses them.
    /// </summary>
    internal static unsafe bool TrySendMessage(SafeSocketHandle socket, ReadOnlySpan<byte> data, ReadOnlySpan<SafeMemfdHandle> descriptors, out int sent)
    {
        ArgumentOutOfRangeException.ThrowIfZero(data.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(descriptors.Length, MaxDescriptorsPerMessage);
        bool socketAdded = false;
        int descriptorsAdded = 0;
        try
        {
            socket.DangerousAddRef(ref socketAdded);
            for (; descriptorsAdded < descriptors.Length; descriptorsAdded++)
            {
                bool added = false;
                descriptors[descriptorsAdded].DangerousAddRef(ref added);
            }

            // nuint-aligned storage for one control message: 5 words = 40 bytes >= CMSG_SPACE(4 * 4) = 32.
            const int ControlWords = 5;
            nuint* control = stackalloc nuint[ControlWords];
            new Span<byte>(control, ControlWords * sizeof(nuint)).Clear();
            fixed (byte* bytes = data)
            {
                IoVec iov = new() { Base = bytes, Length = (nuint)data.Length };
                MsgHdr header = new() { Iov = &iov, IovLength = 1 };
                if (descriptors.Length > 0)
                {
                    nuint dataLength = (nuint)(descriptors.Length * sizeof(int));
                    // SAFETY: control is a zeroed, pointer-aligned stack buffer of 40 bytes; the header takes 16 and the
                    // descriptors at most 16 more from offset CMSG_ALIGN(16) = 16, so every write stays inside it.
                    CmsgHdr* message = (CmsgHdr*)control;
                    message->Length = CmsgLen(dataLength);
                    message->Level = SOL_SOCKET;
                    message->Type = SCM_RIGHTS;
                    int* slots = (int*)((byte*)control + CmsgAlign((nuint)sizeof(CmsgHdr)));
                    for (int i = 0; i < descriptors.Length; i++)
                    {
                        slots[i] = descriptors[i].Fd;
                    }
                    header.Control = control;
                    header.ControlLength = CmsgSpace(dataLength);
                }

                // SAFETY: the socket and every descriptor are AddRef'd, so none of their numbers can be closed and reused
                // during the call; header, iov and control are live locals and bytes is pinned by the fixed statement.
                int fd = (int)socket.DangerousGetHandle();
                nint result;
                do
                {
                    result = Libc.SendMsg(fd, &header, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                while (result < 0 && Marshal.GetLastPInvokeError() == EINTR);

                if (result < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    sent = 0;
                    return errno == EAGAIN ? false : throw GetExceptionForErrno(errno, "sendmsg");
                }
                sent = (int)result;
                return true;
            }
        }
        finally
        {
            for (int i = 0; i < descriptorsAdded; i++)
            {
                descriptors[i].DangerousRelease();
            }
            if (socketAdded)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Receives into <paramref name="buffer"/> with <c>recvmsg</c>, taking at most one descriptor passed with
    /// <c>SCM_RIGHTS</c>. The descriptor arrives close-on-exec (<c>MSG_CMSG_CLOEXEC</c>) and is wrapped in a safe handle
    /// before anything else can fail. Never blocks.
    /// </summary>
    /// <param name="socket">A connected Unix stream socket; borrowed for the call.</param>
    /// <param name="buffer">Where the data goes.</param>
    /// <param name="received">Bytes received; 0 means the peer closed its end.</param>
    /// <param name="descriptor">The descriptor that came with the data, owned by the caller; null if none did.</param>
    /// <returns><see langword="false"/> if nothing is there to read now (EAGAIN).</returns>
    /// <exception cref="ProtocolViolationException">The peer attached more than one descriptor, or other control data
    /// (<c>MSG_CTRUNC</c>); whatever did arrive is closed.</exception>
    /// <exception cref="SystemCallException">recvmsg failed, e.g. ECONNRESET.</exception>
    internal static unsafe bool TryReceiveMessage(SafeSocketHandle socket, Span<byte> buffer, out int received, out SafeMemfdHandle? descriptor)
    {
        received = 0;
        descriptor = null;
        bool socketAdded = false;
        try
        {
            socket.DangerousAddRef(ref socketAdded);
            nuint* control = stackalloc nuint[4];
            new Span<byte>(control, 4 * sizeof(nuint)).Clear();
            fixed (byte* bytes = buffer)
            {
                IoVec iov = new() { Base = bytes, Length = (nuint)buffer.Length };
                MsgHdr header = new()
                {
                    Iov = &iov,
                    IovLength = 1,
                    Control = control,
                    // Room for one descriptor (CMSG_SPACE rounds it up to room for two): anything more sets MSG_CTRUNC and
                    // the kernel closes what did not fit instead of installing it in our table.
                    ControlLength = OneDescriptorControlSpace,
                };

                // SAFETY: the socket is AddRef'd so its number cannot be closed and reused during the call; header, iov and
                // control are live locals, bytes is pinned, and the kernel writes at most ControlLength bytes of control.
                int fd = (int)socket.DangerousGetHandle();
                nint result;
                do
                {
                    result = Libc.RecvMsg(fd, &header, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                }
                while (result < 0 && Marshal.GetLastPInvokeError() == EINTR);

                if (result < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    return errno == EAGAIN ? false : throw GetExceptionForErrno(errno, "recvmsg");
                }
                received = (int)result;

                ProtocolViolationException? violation = null;
                nuint controlLength = header.ControlLength;
                if (controlLength >= CmsgLen(0))
                {
                    // SAFETY: the kernel wrote controlLength (<= 24) bytes of control data into our 32-byte buffer, at
                    // least a full cmsghdr (checked above), so reading the header is in bounds.
                    CmsgHdr message = *(CmsgHdr*)control;
                    if (message.Level == SOL_SOCKET && message.Type == SCM_RIGHTS && message.Length >= CmsgLen(0) && message.Length <= controlLength)
                    {
                        // The 24 bytes meant for one descriptor have room for two (CMSG_SPACE rounds up), so the kernel may
                        // have installed two without MSG_CTRUNC. Wrap every one at once so each is closed on every path.
                        int count = (int)((message.Length - CmsgLen(0)) / sizeof(int));
                        // SAFETY: cmsg_len (<= controlLength, checked) says count descriptors follow the aligned header.
                        int* passed = (int*)((byte*)control + CmsgAlign((nuint)sizeof(CmsgHdr)));
                        var extra = new SafeMemfdHandle?[count];
                        for (int i = 0; i < count; i++)
                        {
                            extra[i] = new SafeMemfdHandle(passed[i], ownsHandle: true);
                        }
                        if (count == 1)
                        {
                            descriptor = extra[0];
                        }
                        else
                        {
                            foreach (SafeMemfdHandle? handle in extra)
                            {
                                handle?.Dispose();
                            }
                            violation = new ProtocolViolationException(
                                $"The peer passed {count} descriptors in one message; the protocol passes one. They were closed.");
                        }
                    }
                    else
                    {
                        violation = new ProtocolViolationException(
                            $"The peer sent control data other than descriptors (level {message.Level}, type {message.Type}, length {message.Length}).");
                    }
                }
                if ((header.Flags & MSG_CTRUNC) != 0)
                {
                    descriptor?.Dispose();
                    descriptor = null;
                    violation = new ProtocolViolationException(
                        "The peer passed more descriptors or control data than one descriptor's room (MSG_CTRUNC); all of it was closed.");
                }
                if (violation is not null)
                {
                    descriptor?.Dispose();
                    descriptor = null;
                    throw violation;
                }
                return true;
            }
        }
        finally
        {
            if (socketAdded)
            {
                socket.DangerousRelease();
            }
        }
    }
}
