using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Private names (<see cref="PageRangeNamespace.Private"/>): a socket file in a directory only this uid can enter, held
/// by a lock for the listener's life, so another process cannot take the name while it is held and a crash's stale
/// file is replaced safely. Abstract names keep working beside them.
/// </summary>
/// <remarks>In the non-parallel collection: two tests point XDG_RUNTIME_DIR, which is process-wide, elsewhere.</remarks>
[Collection(CrossProcessCollection.Name)]
public sealed class ControlPlaneNamespaceTests(ITestOutputHelper output)
{
    private static PageRangeOptions NewOptions(PageRangeNamespace kind) => new()
    {
        RegionSize = PageRangeOptions.MinRegionSize,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        Namespace = kind,
    };

    [Theory]
    [InlineData(PageRangeNamespace.Abstract)]
    [InlineData(PageRangeNamespace.Private)]
    public async Task ListenAndConnect_EitherNamespace_ConnectsAndFreesTheNameOnDispose(PageRangeNamespace kind)
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions(kind);
        string path = ListenerEndPoint.PrivatePath(name, out string directory);
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
            await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
            Assert.Equal(Environment.ProcessId, server.PeerPid);

            if (kind == PageRangeNamespace.Private)
            {
                Assert.Equal(Interop.S_IFSOCK, Interop.GetOwnerAndMode(path)!.Value.Mode & Interop.S_IFMT);
                (uint uid, int mode) = Interop.GetOwnerAndMode(directory)!.Value;
                Assert.Equal(Interop.GetEffectiveUserId(), uid);
                Assert.Equal(0x1C0, mode & 0x1FF);
                Assert.DoesNotContain($"@pagerange/{name}", ControlHandshakeTests.AbstractSocketNames());
            }
            else
            {
                Assert.Contains($"@pagerange/{name}", ControlHandshakeTests.AbstractSocketNames());
                Assert.Null(Interop.GetOwnerAndMode(path));
            }

            // The other namespace does not know the name.
            PageRangeOptions other = NewOptions(kind == PageRangeNamespace.Private ? PageRangeNamespace.Abstract : PageRangeNamespace.Private);
            var nobody = await Assert.ThrowsAsync<PageRangeException>(() => PageRangeConnection.ConnectAsync(name, other).AsTask().WaitAsync(TestTimeouts.Long));
            Assert.Contains("Nobody listens", nobody.Message, StringComparison.Ordinal);
        }
        Assert.Null(Interop.GetOwnerAndMode(path));
        File.Delete(path + ".lock");
    }

    [Fact]
    public async Task Private_NameHeldByAnotherProcess_CannotBeTaken_AndItsStaleFileIsReplacedAfterACrash()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions(PageRangeNamespace.Private);
        string path = ListenerEndPoint.PrivatePath(name, out _);
        using (TestHostProcess holder = TestHostProcess.Start(output, "hostile-private-listen", name))
        {
            Assert.Equal("ok", holder.ReadUntil("listening: "));

            var taken = Assert.Throws<PageRangeException>(() => PageRangeListener.Listen(name, options));
            Assert.Contains($"'{name}' is taken", taken.Message, StringComparison.Ordinal);

            // A crash leaves the socket file behind, and its lock goes with the process.
            holder.Kill();
            holder.WaitForExit();
        }
        Assert.NotNull(Interop.GetOwnerAndMode(path));

        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        Assert.Equal(Environment.ProcessId, server.PeerPid);
        await listener.DisposeAsync();
        // The lock file outlives listeners on purpose (see ListenerEndPoint); the test removes its own.
        File.Delete(path + ".lock");
    }

    [Fact]
    public async Task Private_SecondListenerInTheSameProcess_NameIsTaken_UntilTheFirstIsDisposed()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions(PageRangeNamespace.Private);
        PageRangeListener first = PageRangeListener.Listen(name, options);

        Assert.Throws<PageRangeException>(() => PageRangeListener.Listen(name, options));

        await first.DisposeAsync();
        await using (PageRangeListener second = PageRangeListener.Listen(name, options))
        {
        }
        File.Delete(ListenerEndPoint.PrivatePath(name, out _) + ".lock");
    }

    [Theory]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    [InlineData("open-mode", "has mode 755")]
    [InlineData("symlink", "is not a directory")]
    public Task Private_DirectoryNotThisUidsAlone_RefusedOnBothSides(string kind, string reason) =>
        AssertPrivateDirectoryRefusedAsync(kind, reason);

    /// <summary>Only root can give a directory to another uid (as nobody, 65534 is this uid: the directory would be ours).</summary>
    [RootFact("Gives a directory to another uid")]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public Task Private_DirectoryOfAnotherUid_RefusedOnBothSides() =>
        AssertPrivateDirectoryRefusedAsync("foreign-owner", "belongs to uid 65534");

    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static async Task AssertPrivateDirectoryRefusedAsync(string kind, string reason)
    {
        string runtime = Directory.CreateTempSubdirectory("pagerange-xdg-").FullName;
        string? saved = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        try
        {
            File.SetUnixFileMode(runtime, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            string directory = Path.Combine(runtime, "pagerange");
            switch (kind)
            {
                case "foreign-owner":
                    Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                    await RunAsync("chown", "65534", directory);
                    break;
                case "open-mode":
                    Directory.CreateDirectory(directory);
                    File.SetUnixFileMode(directory, (UnixFileMode)0x1ED);
                    break;
                default:
                    Directory.CreateSymbolicLink(directory, "/tmp");
                    break;
            }
            Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", runtime);
            string name = ControlHandshakeTests.UniqueName();
            PageRangeOptions options = NewOptions(PageRangeNamespace.Private);

            var listen = Assert.Throws<PageRangeException>(() => PageRangeListener.Listen(name, options));
            var connect = await Assert.ThrowsAsync<PageRangeException>(() => PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long));

            Assert.Contains(reason, listen.Message, StringComparison.Ordinal);
            Assert.Contains(reason, connect.Message, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", saved);
            Directory.Delete(runtime, recursive: true);
        }
    }

    [Fact]
    public void Private_NameWithASlash_IsRejected()
    {
        var options = NewOptions(PageRangeNamespace.Private);
        Assert.Throws<ArgumentException>(() => PageRangeListener.Listen("a/b", options));
        Assert.Throws<ArgumentException>(() => PageRangeListener.Listen("..", options));
    }

    private static async Task RunAsync(string program, params string[] arguments)
    {
        using var process = System.Diagnostics.Process.Start(program, arguments);
        await process.WaitForExitAsync().WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, process.ExitCode);
    }
}
