using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// sendmsg/recvmsg with SCM_RIGHTS on real sockets. Joins the serial collection so that counting descriptors in
/// <c>/proc/self/fd</c> is not disturbed by tests running in parallel.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ControlSocketInteropTests
{
    private const int O_CLOEXEC = 0x80000;

    [Fact]
    public void MsgHdrAndCmsgHdr_MatchTheLp64Abi()
    {
        Assert.Equal(8, IntPtr.Size);
        Assert.Equal(56, Marshal.SizeOf<Interop.MsgHdr>());
        Assert.Equal(0, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.Name)));
        Assert.Equal(8, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.NameLength)));
        Assert.Equal(16, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.Iov)));
        Assert.Equal(24, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.IovLength)));
        Assert.Equal(32, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.Control)));
        Assert.Equal(40, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.ControlLength)));
        Assert.Equal(48, (int)Marshal.OffsetOf<Interop.MsgHdr>(nameof(Interop.MsgHdr.Flags)));
        Assert.Equal(16, Marshal.SizeOf<Interop.IoVec>());
        Assert.Equal(16, Marshal.SizeOf<Interop.CmsgHdr>());
        Assert.Equal(8, (int)Marshal.OffsetOf<Interop.CmsgHdr>(nameof(Interop.CmsgHdr.Level)));
        Assert.Equal(12, (int)Marshal.OffsetOf<Interop.CmsgHdr>(nameof(Interop.CmsgHdr.Type)));
        Assert.Equal(20u, (uint)Interop.CmsgLen(sizeof(int)));
        Assert.Equal(24u, (uint)Interop.CmsgSpace(sizeof(int)));
        Assert.Equal(32u, (uint)Interop.CmsgSpace(4 * sizeof(int)));
    }

    [Fact]
    public async Task SendAndReceive_WithDescriptor_PassesTheSameMemfdCloseOnExec()
    {
        (Socket left, Socket right) = await ConnectedPairAsync();
        using (left)
        using (right)
        using (SharedRegion region = SharedRegion.Create("interop-test", 65536))
        {
            Assert.True(Interop.TrySendMessage(left.SafeHandle, "hello"u8, region.Handle, out int sent));
            Assert.Equal(5, sent);

            byte[] buffer = new byte[16];
            Assert.True(WaitReadable(right));
            Assert.True(Interop.TryReceiveMessage(right.SafeHandle, buffer, out int received, out SafeMemfdHandle? descriptor));

            Assert.Equal("hello"u8.ToArray(), buffer[..received]);
            Assert.NotNull(descriptor);
            Assert.NotEqual(region.Handle.Fd, descriptor.Fd);
            Assert.True(IsCloseOnExec(descriptor.Fd), "the received descriptor must be close-on-exec");
            // The same file: a write through a mapping of the received descriptor shows in the original mapping.
            using SharedRegion opened = SharedRegion.Open(descriptor, 65536, writableBytes: 65536);
            opened.GetSpan(4096, 4)[..].Fill(0xAB);
            Assert.Equal([0xAB, 0xAB, 0xAB, 0xAB], region.GetSpan(4096, 4).ToArray());
        }
    }

    [Fact]
    public async Task Receive_WithoutDescriptor_ReturnsNone_AndNothingToReadIsFalse()
    {
        (Socket left, Socket right) = await ConnectedPairAsync();
        using (left)
        using (right)
        {
            byte[] buffer = new byte[16];
            Assert.False(Interop.TryReceiveMessage(right.SafeHandle, buffer, out _, out _));

            Assert.True(Interop.TrySendMessage(left.SafeHandle, "x"u8, descriptor: null, out _));
            Assert.True(WaitReadable(right));
            Assert.True(Interop.TryReceiveMessage(right.SafeHandle, buffer, out int received, out SafeMemfdHandle? descriptor));

            Assert.Equal(1, received);
            Assert.Null(descriptor);
        }
    }

    [Theory]
    [InlineData(2, "passed 2 descriptors")]
    [InlineData(4, "MSG_CTRUNC")]
    public async Task Receive_MoreThanOneDescriptor_ThrowsProtocolViolationAndLeaksNone(int count, string expected)
    {
        (Socket left, Socket right) = await ConnectedPairAsync();
        using (left)
        using (right)
        using (SharedRegion region = SharedRegion.Create("interop-many", 65536))
        {
            int before = CountOpenDescriptors();
            SafeMemfdHandle[] descriptors = Enumerable.Repeat(region.Handle, count).ToArray();
            Assert.True(Interop.TrySendMessage(left.SafeHandle, "xy"u8, descriptors, out _));
            Assert.True(WaitReadable(right));

            byte[] buffer = new byte[16];
            SafeMemfdHandle? descriptor = null;
            var error = Assert.Throws<ProtocolViolationException>(
                () => Interop.TryReceiveMessage(right.SafeHandle, buffer, out _, out descriptor));

            Assert.Contains(expected, error.Message, StringComparison.Ordinal);
            Assert.Null(descriptor);
            Assert.Equal(before, CountOpenDescriptors());
        }
    }

    [Fact]
    public async Task GetPeerCredentials_SameProcess_ReportsOurPidAndUid()
    {
        (Socket left, Socket right) = await ConnectedPairAsync();
        using (left)
        using (right)
        {
            Interop.PeerCredentials credentials = Interop.GetPeerCredentials(right);

            Assert.Equal(Environment.ProcessId, credentials.Pid);
            Assert.Equal(Interop.GetEffectiveUserId(), credentials.Uid);
        }
    }

    internal static async Task<(Socket Connected, Socket Accepted)> ConnectedPairAsync()
    {
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(ControlHandshake.GetEndPoint($"interop-{Guid.NewGuid():N}"));
        listener.Listen(1);
        var connected = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await connected.ConnectAsync(listener.LocalEndPoint!).WaitAsync(TestTimeouts.Short);
        Socket accepted = await listener.AcceptAsync().WaitAsync(TestTimeouts.Short);
        return (connected, accepted);
    }

    internal static int CountOpenDescriptors()
    {
        // Descriptors other tests left to finalizers must close before counting, or they would close mid-test.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Directory.GetFiles("/proc/self/fd").Length;
    }

    private static bool WaitReadable(Socket socket) => socket.Poll(TestTimeouts.Short, SelectMode.SelectRead);

    private static bool IsCloseOnExec(int fd)
    {
        string flags = File.ReadLines($"/proc/self/fdinfo/{fd}").First(line => line.StartsWith("flags:", StringComparison.Ordinal));
        int value = Convert.ToInt32(flags["flags:".Length..].Trim(), 8);
        return (value & O_CLOEXEC) != 0;
    }
}
