using System.Diagnostics;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// The control plane between this process and a real TestHost process: credentials, memfds passed with SCM_RIGHTS and
/// mapped on the other side, refusals seen by both sides, and the death notification after SIGKILL.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ControlPlaneTests(ITestOutputHelper output)
{
    // The TestHost's regions are 64 KiB; ours match so either side may offer either.
    private static readonly PageRangeOptions s_options = new() { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };

    private const uint Nobody = 65534;

    [Fact]
    public async Task Connect_ToTestHostListener_BothSeeCredentialsAndWriteIntoEachOthersRegion()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = StartListening(name);
        using SharedRegion own = ControlHandshakeTests.CreateRegion("test-own");

        await using HandshakeResult handshake = await ConnectAsync(name, s_options, own);

        Assert.Equal(host.Id, handshake.PeerCredentials.Pid);
        Assert.Equal(Interop.GetEffectiveUserId(), handshake.PeerCredentials.Uid);
        Assert.Equal($"{Environment.ProcessId} {Interop.GetEffectiveUserId()} {handshake.PeerCredentials.Gid}", host.ReadUntil("connected: "));
        await ExchangeMarkersAsync(host, handshake, own);
    }

    [Fact]
    public async Task Accept_FromTestHostConnector_BothSeeCredentialsAndWriteIntoEachOthersRegion()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        Task<(HandshakeResult, SharedRegion)> accepting = AcceptAsync(listener);
        using TestHostProcess host = TestHostProcess.Start(output, "control-connect", name);

        (HandshakeResult handshake, SharedRegion own) = await accepting.WaitAsync(TestTimeouts.Long);
        await using (handshake)
        using (own)
        {
            Assert.Equal(host.Id, handshake.PeerCredentials.Pid);
            Assert.Equal(Interop.GetEffectiveUserId(), handshake.PeerCredentials.Uid);
            Assert.StartsWith($"{Environment.ProcessId} ", host.ReadUntil("connected: "), StringComparison.Ordinal);
            await ExchangeMarkersAsync(host, handshake, own);
        }
    }

    [Fact]
    public async Task Accept_WrongProtocolVersion_ReasonOnlyOnTheRefusingSide()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        Task<Exception> failure = NextFailureAsync(listener);
        using TestHostProcess host = TestHostProcess.Start(output, "control-connect", name, "--version", "1");

        var ours = Assert.IsType<ConnectionRefusedException>(await failure.WaitAsync(TestTimeouts.Long));
        string theirs = host.ReadUntil("refused: ");

        output.WriteLine($"listener: {ours.Message}");
        Assert.False(ours.RefusedByPeer);
        Assert.Contains($"pid {host.Id}", ours.Message, StringComparison.Ordinal);
        Assert.Contains($"the connecting process speaks PageRange protocol version 1, and the listener speaks version {ControlHandshake.ProtocolVersion}", ours.Message, StringComparison.Ordinal);
        // The refused side learns only that it was refused: the reason stays with the listener.
        Assert.Contains("The listener", theirs, StringComparison.Ordinal);
        Assert.Contains("refused the connection; it keeps the reason to itself", theirs, StringComparison.Ordinal);
        Assert.DoesNotContain("version", theirs, StringComparison.Ordinal);
        Assert.Equal("True", host.ReadUntil("refused-by-peer: "));
        Assert.Equal(0, host.WaitForExit());
    }

    [RootFact]
    public async Task Accept_DifferentUid_RefusedByDefault()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        Task<Exception> failure = NextFailureAsync(listener);
        // The host drops to nobody and, so that it is the listener that refuses, allows our uid itself.
        using TestHostProcess host = TestHostProcess.Start(
            output, "control-connect", name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}");

        Assert.Equal($"{Nobody}", host.ReadUntil("uid: "));
        var ours = Assert.IsType<ConnectionRefusedException>(await failure.WaitAsync(TestTimeouts.Long));
        string theirs = host.ReadUntil("refused: ");

        output.WriteLine($"listener: {ours.Message}");
        Assert.False(ours.RefusedByPeer);
        Assert.Contains($"the connecting process runs as uid {Nobody}, and the listener allows only its own uid {Interop.GetEffectiveUserId()}", ours.Message, StringComparison.Ordinal);
        Assert.Contains("refused the connection; it keeps the reason to itself", theirs, StringComparison.Ordinal);
        Assert.DoesNotContain("AllowedUids", theirs, StringComparison.Ordinal);
        Assert.Equal("True", host.ReadUntil("refused-by-peer: "));
        Assert.Equal(0, host.WaitForExit());
    }

    [RootFact]
    public async Task Accept_DifferentUid_AllowedByOptions()
    {
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionSize = s_options.RegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };
        options.AllowedUids.Add(Nobody);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<(HandshakeResult, SharedRegion)> accepting = AcceptAsync(listener);
        using TestHostProcess host = TestHostProcess.Start(
            output, "control-connect", name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}");

        (HandshakeResult handshake, SharedRegion own) = await accepting.WaitAsync(TestTimeouts.Long);
        await using (handshake)
        using (own)
        {
            Assert.Equal(Nobody, handshake.PeerCredentials.Uid);
            Assert.Equal(Nobody, handshake.PeerCredentials.Gid);
            Assert.Equal(host.Id, handshake.PeerCredentials.Pid);
            Assert.StartsWith($"{Environment.ProcessId} {Interop.GetEffectiveUserId()} ", host.ReadUntil("connected: "), StringComparison.Ordinal);
            await ExchangeMarkersAsync(host, handshake, own);
        }
    }

    [RootFact]
    public async Task Connect_ListenerWithDifferentUid_RefusedByDefault()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = StartListening(name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}");
        using SharedRegion own = ControlHandshakeTests.CreateRegion("test-own");

        var ours = await Assert.ThrowsAsync<ConnectionRefusedException>(() => ConnectAsync(name, s_options, own));
        string theirs = host.ReadUntil("handshake-failed: ");

        output.WriteLine($"connector: {ours.Message}");
        Assert.False(ours.RefusedByPeer);
        Assert.Contains($"the listener runs as uid {Nobody}, and the connecting process allows only its own uid", ours.Message, StringComparison.Ordinal);
        Assert.Contains("refused the connection; it keeps the reason to itself", theirs, StringComparison.Ordinal);
        Assert.DoesNotContain("uid", theirs, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("unsealed", "is not sealed against resizing")]
    [InlineData("wrong-size", "bytes but 131072 were announced")]
    public async Task Accept_BadRegionFromTestHost_RefusedWithTheReasonKeptLocal(string kind, string reason)
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        Task<Exception> failure = NextFailureAsync(listener);
        using TestHostProcess host = TestHostProcess.Start(output, "control-connect", name, "--region", kind);

        var ours = Assert.IsType<ConnectionRefusedException>(await failure.WaitAsync(TestTimeouts.Long));
        string theirs = host.ReadUntil("refused: ");

        output.WriteLine($"listener: {ours.Message}");
        Assert.IsType<ProtocolViolationException>(ours.InnerException);
        Assert.Contains("the connecting process offered a bad region", ours.Message, StringComparison.Ordinal);
        Assert.Contains(reason, ours.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(reason, theirs, StringComparison.Ordinal);
        Assert.Contains("refused the connection", theirs, StringComparison.Ordinal);
        Assert.Equal(0, host.WaitForExit());
    }

    [Fact]
    public async Task Connect_PeerKilled_RaisesPeerDied()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = StartListening(name);
        using SharedRegion own = ControlHandshakeTests.CreateRegion("test-own");
        await using HandshakeResult handshake = await ConnectAsync(name, s_options, own);
        handshake.Control.StartWatching();
        host.ReadUntil("connected: ");
        Assert.False(handshake.Control.PeerDied.IsCancellationRequested);

        var clock = Stopwatch.StartNew();
        host.Kill();
        await ControlHandshakeTests.WaitCancelledAsync(handshake.Control.PeerDied);

        output.WriteLine($"PeerDied {clock.Elapsed.TotalMilliseconds:F1} ms after SIGKILL");
        var reason = Assert.IsType<PeerDiedException>(handshake.Control.CloseReason);
        Assert.Contains($"pid {host.Id}", reason.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TestTimeouts.Short, $"PeerDied took {clock.Elapsed}");
    }

    [Fact]
    public async Task PublicConnection_PeerKilled_CancelsPeerDied()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = StartListening(name);
        await using PageRangeConnection connection = await PageRangeConnection.ConnectAsync(name, s_options).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(host.Id, connection.PeerPid);

        host.Kill();

        await ControlHandshakeTests.WaitCancelledAsync(connection.PeerDied);
    }

    [Fact]
    public async Task Listen_ListenerProcessKilled_LeavesNoAbstractSocketBehind()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = StartListening(name);
        Assert.Contains($"@pagerange/{name}", ControlHandshakeTests.AbstractSocketNames());

        host.Kill();

        Assert.DoesNotContain($"@pagerange/{name}", ControlHandshakeTests.AbstractSocketNames());
        Assert.False(File.Exists(name));
        await using PageRangeListener again = PageRangeListener.Listen(name, s_options);
    }

    [Fact]
    public async Task ConnectAndClose_HundredCycles_DescriptorCountReturnsToStart()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        // Warm up: the socket engine opens its epoll descriptors on first use, not per connection.
        await CycleAsync(listener, 5);
        int before = ControlSocketInteropTests.CountOpenDescriptors();

        await CycleAsync(listener, 100);

        int after = ControlSocketInteropTests.CountOpenDescriptors();
        Assert.Equal(before, after);
        Assert.Contains($"@pagerange/{name}", ControlHandshakeTests.AbstractSocketNames());
    }

    private static async Task CycleAsync(PageRangeListener listener, int count)
    {
        for (int i = 0; i < count; i++)
        {
            ValueTask<PageRangeConnection> accepting = listener.AcceptAsync();
            PageRangeConnection client = await PageRangeConnection.ConnectAsync(listener.Name, s_options).AsTask().WaitAsync(TestTimeouts.Long);
            PageRangeConnection server = await accepting.AsTask().WaitAsync(TestTimeouts.Long);
            await client.DisposeAsync();
            await ControlHandshakeTests.WaitCancelledAsync(server.PeerDied);
            await server.DisposeAsync();
        }
    }

    private TestHostProcess StartListening(string name, params string[] flags)
    {
        TestHostProcess host = TestHostProcess.Start(output, "control-listen", [name, .. flags]);
        host.ReadUntil("listening: ");
        return host;
    }

    private static async Task<HandshakeResult> ConnectAsync(string name, PageRangeOptions options, SharedRegion own) =>
        await ControlHandshake.ConnectAsync(name, options, own, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);

    private static async Task<(HandshakeResult, SharedRegion)> AcceptAsync(PageRangeListener listener)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        return await listener.AcceptHandshakeAsync(
            () => ControlHandshakeTests.CreateRegion("test-accepted"), static region => region, timeout.Token);
    }

    private static Task<Exception> NextFailureAsync(PageRangeListener listener)
    {
        var failed = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        listener.HandshakeFailed += (_, e) => failed.TrySetResult(e.Exception);
        // Keep accepting in the background until the listener is disposed; its failures come through the event.
        _ = Task.Run(async () =>
        {
            try
            {
                await AcceptAsync(listener);
            }
            catch (Exception error) when (error is ObjectDisposedException or OperationCanceledException)
            {
                // The test is over.
            }
        });
        return failed.Task;
    }

    /// <summary>Each side writes a marker into the other's region through its own mapping of the peer's memfd.</summary>
    private static async Task ExchangeMarkersAsync(TestHostProcess host, HandshakeResult handshake, SharedRegion own)
    {
        byte[] ours = "written-by-the-test"u8.ToArray();
        ours.CopyTo(handshake.PeerRegion.GetSpan(4096, ours.Length));
        host.WriteLine($"read 4096 {ours.Length}");
        Assert.Equal(Convert.ToHexString(ours), host.ReadUntil("bytes: "));

        byte[] theirs = "written-by-the-host"u8.ToArray();
        host.WriteLine($"write 12288 {Convert.ToHexString(theirs)}");
        Assert.Equal("ok", host.ReadUntil("written: "));
        Assert.Equal(theirs, own.GetSpan(12288, theirs.Length).ToArray());

        // A clean exit closes the host's end: our watch reports it.
        handshake.Control.StartWatching();
        host.WriteLine("quit");
        Assert.Equal(0, host.WaitForExit());
        await ControlHandshakeTests.WaitCancelledAsync(handshake.Control.PeerDied);
        Assert.IsType<PeerDiedException>(handshake.Control.CloseReason);
    }
}
