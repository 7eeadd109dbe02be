using System.Diagnostics;
using System.Globalization;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Around the calls: cancellation and timeouts seen by the callee's handler, late replies freed, memory given back to
/// the kernel after traffic, and connections refused for a foreign uid or a wrong protocol version.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class TransportLifecycleTests(ITestOutputHelper output)
{
    private const uint Nobody = 65534;

    [Fact]
    public async Task Call_Timeout_ThrowsTimeoutHandlerSeesCancellationAndLateReplyIsFreed()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;

        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<TimeoutException>(() => connection.Call(TransportHost.Codes.WaitCancelled, "slow"u8, TimeSpan.FromMilliseconds(300)));
        output.WriteLine($"timed out after {clock.Elapsed.TotalMilliseconds:F0} ms: {timeout.Message}");
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(250), $"timed out after only {clock.Elapsed}");

        // The handler's CallCancelled fired (not its 60 s bound), and it replied late anyway.
        string id = host.Process.ReadUntil("waiting: ");
        Assert.Equal($"{id} True", host.Process.ReadUntil("cancelled: "));

        // Nobody waits for the late reply: the connection frees it by itself (within a park timeout or so), and the
        // host's live buffers in our region return to zero.
        await WaitUntilAsync(() => host.Live() == (0, 0), "the late reply was never freed");
        Assert.Equal(0, connection.LiveIncomingTransactions);
        using Transaction after = connection.Call(TransportHost.Codes.Echo, "after"u8, TestTimeouts.Long);
        Assert.Equal("after"u8.ToArray(), after.Payload.ToArray());
    }

    [Fact]
    public async Task CallAsync_CancelledAndTimedOut_HandlerSeesCancellationBothTimes()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;

        using (var cancel = new CancellationTokenSource())
        {
            Task<Transaction> call = connection.CallAsync(TransportHost.Codes.WaitCancelled, "cancel me"u8.ToArray(), TestTimeouts.Long, cancel.Token).AsTask();
            string id = host.Process.ReadUntil("waiting: ");
            Assert.False(call.IsCompleted);
            await cancel.CancelAsync();
            var cancelled = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call.WaitAsync(TestTimeouts.Long));
            Assert.Equal(cancel.Token, cancelled.CancellationToken);
            Assert.Equal($"{id} True", host.Process.ReadUntil("cancelled: "));
        }

        Task<Transaction> slow = connection.CallAsync(TransportHost.Codes.WaitCancelled, "time me out"u8.ToArray(), TimeSpan.FromMilliseconds(300)).AsTask();
        string slowId = host.Process.ReadUntil("waiting: ");
        await Assert.ThrowsAsync<TimeoutException>(() => slow.WaitAsync(TestTimeouts.Long));
        Assert.Equal($"{slowId} True", host.Process.ReadUntil("cancelled: "));

        await WaitUntilAsync(() => host.Live() == (0, 0), "a late reply was never freed");
        Assert.Equal(0, connection.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Traffic_ThenFreesAndScan_ResidentBytesOfBothRegionsBackToHeaderPages()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;
        SharedRegion ours = connection.Inbound.Region;
        SharedRegion theirs = connection.Outbound.Region;
        long ourHeader = connection.Inbound.Layout.HeaderBytes;
        long theirHeader = connection.Outbound.Layout.HeaderBytes;
        Assert.Equal(ourHeader, ours.ResidentBytes);
        Assert.Equal(theirHeader, theirs.ResidentBytes);

        // Traffic in both directions: calls of up to 1 MiB (request in theirs, reply in ours), and a stream each way.
        foreach (int size in new[] { 1, 4097, 300_000, 1 << 20 })
        {
            using Transaction reply = connection.Call(TransportHost.Codes.Echo, new byte[size], TestTimeouts.Long);
            Assert.Equal(size, reply.Length);
        }
        byte[] buffer = new byte[StreamMessage.MaxLength];
        for (ulong sequence = 0; sequence < 2_000; sequence++)
        {
            Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
            StreamMessage.Write(message, sequence);
            connection.SendOneway(TransportHost.Codes.Stream, message);
        }
        host.Process.WriteLine("send-stream 2000");
        for (int i = 0; i < 2_000; i++)
        {
            using Transaction transaction = await TransportCallTests.ReceiveBoundedAsync(connection);
        }
        Assert.Equal("2000", host.Process.ReadUntil("sent: "));
        Assert.Equal(0, (await host.WaitForStreamAsync(2_000)).Errors);
        Assert.True(ours.ResidentBytes >= ourHeader + (1 << 20), $"our region holds only {ours.ResidentBytes} bytes after traffic");
        Assert.True(theirs.ResidentBytes >= theirHeader + (1 << 20), $"their region holds only {theirs.ResidentBytes} bytes after traffic");

        // Everything is freed. Their region's pages are on our shrinker once our pump drained the host's frees (it
        // does so every park timeout by itself); ours are on the host's, which scans when told.
        await WaitUntilAsync(() =>
        {
            Shrinker.Shared.Scan(long.MaxValue);
            return theirs.ResidentBytes == theirHeader;
        }, "their region never went back to its header pages");
        // The host gives its idle slab of small oneways (and any frees read lazily) back at its own housekeeping,
        // within a park timeout of the stream's end: scan until that happened.
        string[] scanned = [];
        await WaitUntilAsync(() =>
        {
            scanned = host.Command("scan", "scanned: ").Split(' ');
            output.WriteLine($"host scan freed {scanned[0]} pages; our region resident {scanned[1]} (header {scanned[2]})");
            return long.Parse(scanned[1], CultureInfo.InvariantCulture) == ourHeader;
        }, "our region never went back to its header pages on the host's scan");
        Assert.Equal(ourHeader, ours.ResidentBytes);
        Assert.Equal(theirHeader, theirs.ResidentBytes);
        Assert.Equal(0, connection.Outbound.LiveBuffers);

        // And the memory comes back when it is needed again.
        using Transaction again = connection.Call(TransportHost.Codes.Echo, new byte[100_000], TestTimeouts.Long);
        Assert.Equal(100_000, again.Length);
    }

    [RootFact]
    public async Task Accept_DifferentUid_RefusedByDefaultAndListenerKeepsAccepting()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, TransportHost.DefaultOptions());
        var failures = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        listener.HandshakeFailed += (_, e) => failures.TrySetResult(e.Exception);
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();

        // The host drops to nobody and allows our uid itself, so that it is our listener that refuses.
        using (TestHostProcess stranger = TestHostProcess.Start(output, "transport-connect", name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}"))
        {
            Assert.Equal($"{Nobody}", stranger.ReadUntil("uid: "));
            var ours = Assert.IsType<ConnectionRefusedException>(await failures.Task.WaitAsync(TestTimeouts.Long));
            string theirs = stranger.ReadUntil("refused: ");
            output.WriteLine($"listener: {ours.Message}\nhost: {theirs}");
            Assert.Contains($"the connecting process runs as uid {Nobody}, and the listener allows only its own uid {Interop.GetEffectiveUserId()}", ours.Message, StringComparison.Ordinal);
            // The refused side learns only that it was refused (issue 11): the reason stays with the listener.
            Assert.DoesNotContain("AllowedUids", theirs, StringComparison.Ordinal);
            Assert.Equal(0, stranger.WaitForExit());
        }
        Assert.False(accepting.IsCompleted);

        using TestHostProcess friend = TestHostProcess.Start(output, "transport-connect", name);
        await using PageRangeConnection connection = await accepting.WaitAsync(TestTimeouts.Long);
        Assert.Equal(friend.Id, connection.PeerPid);
        Assert.Equal(Interop.GetEffectiveUserId(), connection.PeerUid);
        using Transaction reply = connection.Call(TransportHost.Codes.Echo, "welcome"u8, TestTimeouts.Long);
        Assert.Equal("welcome"u8.ToArray(), reply.Payload.ToArray());
    }

    [RootFact]
    public async Task Connect_ListenerWithDifferentUid_RefusedByDefault()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = TestHostProcess.Start(output, "control-listen", name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}");
        host.ReadUntil("listening: ");

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, TransportHost.DefaultOptions()).AsTask().WaitAsync(TestTimeouts.Long));

        output.WriteLine(refused.Message);
        Assert.Contains($"the listener runs as uid {Nobody}, and the connecting process allows only its own uid", refused.Message, StringComparison.Ordinal);
        Assert.Contains("AllowedUids", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Accept_WrongProtocolVersion_RefusedAndListenerKeepsAccepting()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, TransportHost.DefaultOptions());
        var failures = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        listener.HandshakeFailed += (_, e) => failures.TrySetResult(e.Exception);
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Task<PageRangeConnection> accepting = listener.AcceptAsync(timeout.Token).AsTask();

        using (TestHostProcess old = TestHostProcess.Start(output, "control-connect", name, "--version", "99"))
        {
            var ours = Assert.IsType<ConnectionRefusedException>(await failures.Task.WaitAsync(TestTimeouts.Long));
            string theirs = old.ReadUntil("refused: ");
            output.WriteLine($"listener: {ours.Message}\nhost: {theirs}");
            Assert.Contains($"the connecting process speaks PageRange protocol version 99, and the listener speaks version {ControlHandshake.ProtocolVersion}", ours.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("protocol version 99", theirs, StringComparison.Ordinal);
            Assert.Equal(0, old.WaitForExit());
        }
        Assert.False(accepting.IsCompleted);

        using TestHostProcess current = TestHostProcess.Start(output, "transport-connect", name);
        await using PageRangeConnection connection = await accepting.WaitAsync(TestTimeouts.Long);
        using Transaction reply = connection.Call(TransportHost.Codes.Echo, "v1"u8, TestTimeouts.Long);
        Assert.Equal("v1"u8.ToArray(), reply.Payload.ToArray());
    }

    [Fact]
    public async Task Connect_ListenerWithWrongProtocolVersion_Refused()
    {
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = TestHostProcess.Start(output, "control-listen", name, "--version", "99");
        host.ReadUntil("listening: ");

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, TransportHost.DefaultOptions()).AsTask().WaitAsync(TestTimeouts.Long));

        output.WriteLine(refused.Message);
        Assert.Contains("version 99", refused.Message, StringComparison.Ordinal);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string failure)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TestTimeouts.Short, failure);
            // A poll interval, not a race cover: the condition is re-checked until the bound above.
            await Task.Delay(20);
        }
    }
}
