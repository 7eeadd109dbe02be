using System.Diagnostics;
using System.Net.Sockets;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The death backstop never raises a false alarm: it watches a peer's process through a pidfd only where the pid is
/// ours to see and names the process that handshook; every other peer dies by its socket's end-of-file alone.
/// </summary>
public sealed class ControlPeerProcessTests
{
    [Fact]
    public void Open_PidZero_IsNeverWatchedNorDeclaredExited()
    {
        using Socket socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        using PeerProcess peer = PeerProcess.Open(socket, new Interop.PeerCredentials(0, 0, 0));

        Assert.False(peer.IsWatched);
        Assert.False(peer.HasExited);
    }

    [Fact]
    public void Open_PidAlreadyGone_IsNotWatchedNorDeclaredExited()
    {
        int gone;
        using (Process process = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            Assert.True(process.WaitForExit(TestTimeouts.Long));
            gone = process.Id;
        }
        // An unconnected socket has no SO_PEERPIDFD: Open falls back to pidfd_open of the (fake) credential's pid.
        using Socket socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

        using PeerProcess peer = PeerProcess.Open(socket, new Interop.PeerCredentials(gone, 0, 0));

        Assert.False(peer.IsWatched);
        Assert.False(peer.HasExited);
    }

    [Fact]
    public async Task Open_LiveProcess_IsWatchedAndItsExitIsSeen()
    {
        using Process process = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            using Socket socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            using PeerProcess peer = PeerProcess.Open(socket, new Interop.PeerCredentials(process.Id, 0, 0));
            Assert.True(peer.IsWatched);
            Assert.False(peer.HasExited);

            process.Kill();
            var clock = Stopwatch.StartNew();
            while (!peer.HasExited)
            {
                Assert.True(clock.Elapsed < TestTimeouts.Long, "the pidfd never reported the exit");
                await Task.Delay(10);
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }
    }

    [Fact]
    public void KeepOnlyIf_HelloNamesAnotherPid_StopsWatching()
    {
        using Socket socket = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var credentials = new Interop.PeerCredentials(Environment.ProcessId, 0, 0);
        using PeerProcess same = PeerProcess.Open(socket, credentials);
        using PeerProcess other = PeerProcess.Open(socket, credentials);

        same.KeepOnlyIf(Environment.ProcessId, credentials);
        other.KeepOnlyIf(Environment.ProcessId + 1, credentials);

        Assert.True(same.IsWatched);
        Assert.False(other.IsWatched);
        Assert.False(other.HasExited);
    }
}
