using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// The log events of real connections, listeners and servers reach <see cref="PageRangeOptions.LoggerFactory"/> with
/// their stable ids: ignored frees and violations a raw peer causes, refused handshakes on both sides, a server's
/// clients coming and going, and a handler that throws.
/// </summary>
[SuppressMessage("Trimming", "IL2026", Justification = "Tests run on the JIT.")]
[SuppressMessage("AOT", "IL3050", Justification = "Tests run on the JIT.")]
public sealed class ConnectionLogTests(ITestOutputHelper output)
{
    private static readonly int s_page = SharedRegion.PageSize;

    private static PageRangeOptions SmallRegion(ILoggerFactory? factory = null) => new()
    {
        RegionSize = 256L << 10,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        RegionFullTimeout = TimeSpan.FromMilliseconds(200),
        WaitStrategy = WaitStrategy.SpinThenPark,
        LoggerFactory = factory,
    };

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task RawPeer_ForgedFreeThenScribble_IgnoredFreeAndViolationLoggedWithTheirIds()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using (PageRangeListener listener = PageRangeListener.Listen(name, SmallRegion(capture.Factory)))
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            await using RawPeer peer = await RawPeer.ConnectAsync(name, SmallRegion());
            await using PageRangeConnection victim = await accepting.WaitAsync(TestTimeouts.Long);

            // A free of a buffer the victim never sent: its writer drains it before its next send of more than
            // OutboundChannel.LazyDrainMaxMessage bytes (smaller ones leave frees for a batch) and ignores it.
            peer.Inbound.Free(new TransactionRecord(7, 3L * s_page, 8, 0, TransactionFlags.Oneway));
            victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]);
            LogEntry ignored = Assert.Single(capture.WithId(PageRangeLogEvents.IgnoredFree));
            Assert.Equal(PageRangeLogEvents.AllocationCategory, ignored.Category);
            Assert.Equal(LogLevel.Warning, ignored.Level);
            Assert.Contains($"free of offset {3L * s_page} ignored", ignored.Message, StringComparison.Ordinal);

            // A transaction ring tail far ahead of anything published: the victim closes the connection.
            peer.Scribble(RegionHeaderLayout.TxTailOffset, BitConverter.GetBytes(1UL << 40));
            Assert.Throws<ProtocolViolationException>(() => victim.TryReceive(out _));
            LogEntry violation = Assert.Single(capture.WithId(PageRangeLogEvents.ProtocolViolation));
            Assert.Equal(PageRangeLogEvents.TransportCategory, violation.Category);
            Assert.Equal(LogLevel.Error, violation.Level);
            Assert.StartsWith($"Peer pid {Environment.ProcessId} on '{name}' broke the protocol in ", violation.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("broke the protocol in unknown", violation.Message, StringComparison.Ordinal);
            Assert.EndsWith("; the connection is closed", violation.Message, StringComparison.Ordinal);
            // The violation is the connection's end: no second event calls it a death.
            Assert.Empty(capture.WithId(PageRangeLogEvents.PeerDied));
        }
        // Other tests run beside this one: count only this connection's memfds, by name, and give the close its time.
        using var deadline = new CancellationTokenSource(TestTimeouts.Long);
        while (OwnMemfds(name) > 0 || File.ReadAllText("/proc/self/maps").Contains($"pagerange:{name}", StringComparison.Ordinal))
        {
            await Task.Delay(20, deadline.Token);
        }
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task RawPeer_FloodsTheFreeRingWithForgedFrees_AFewLinesLogged_TheConnectionServes()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, SmallRegion(capture.Factory));
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        await using RawPeer peer = await RawPeer.ConnectAsync(name, SmallRegion());
        await using PageRangeConnection victim = await accepting.WaitAsync(TestTimeouts.Long);

        // Rounds of a ring-full of frees of buffers the victim never sent, each round drained by a send of the victim's.
        int forged = 0;
        for (int round = 0; round < 8; round++)
        {
            for (int i = 0; i < 60; i++)
            {
                peer.Inbound.Free(new TransactionRecord(7, (long)(1 + (i % 8)) * s_page, 8, 0, TransactionFlags.Oneway));
                forged++;
            }
            victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]);
        }
        Assert.Equal(forged, victim.Outbound.IgnoredFrees);
        int lines = capture.WithId(PageRangeLogEvents.IgnoredFree).Length;
        output.WriteLine($"{forged} forged frees, {lines} lines");
        Assert.InRange(lines, 1, PageRange.Allocation.BufferAllocator.IgnoredFreeLogBurst);
        Assert.True(victim.IsPeerAlive);
        Assert.Empty(capture.WithId(PageRangeLogEvents.ProtocolViolation));
    }

    private static int OwnMemfds(string name) =>
        Directory.GetFiles("/proc/self/fd").Count(fd =>
        {
            try
            {
                return new FileInfo(fd).LinkTarget?.Contains($"pagerange:{name}", StringComparison.Ordinal) == true;
            }
            catch (IOException)
            {
                return false; // closed meanwhile
            }
        });

    [Fact]
    public async Task Handshake_ListenerRefuses_BothSidesLogARefusalWithTheReason()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, SmallRegion(capture.Factory));
        listener.Admit = _ => "closed for\nlunch";
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();

        await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, SmallRegion(capture.Factory)).AsTask().WaitAsync(TestTimeouts.Long));

        LogEntry[] refused = await WaitForAsync(capture, PageRangeLogEvents.HandshakeRefused, 2);
        Assert.All(refused, entry => Assert.Equal(LogLevel.Warning, entry.Level));
        Assert.All(refused, entry => Assert.Equal(PageRangeLogEvents.TransportCategory, entry.Category));
        // The listener knows who it refused; the reason reaches the log with its control characters replaced.
        Assert.Contains(refused, entry => entry.Message.StartsWith($"Handshake on '{name}' with pid {Environment.ProcessId} (uid ", StringComparison.Ordinal));
        Assert.All(refused, entry => Assert.DoesNotContain('\n', entry.Message));
        Assert.Contains(refused, entry => entry.Message.Contains("closed for lunch", StringComparison.Ordinal));
        Assert.False(accepting.IsCompleted);
    }

    [Fact]
    public async Task Handshake_NoFactory_NothingLoggedAnywhere()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, SmallRegion());
        listener.Admit = _ => "no";
        _ = listener.AcceptAsync().AsTask();

        await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, SmallRegion()).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.Empty(capture.Entries);
    }

    [Fact]
    public async Task Server_ClientComesCallsAFailingHandlerAndGoes_ConnectedHandlerFailedDisconnectedLogged()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new PageRangeServerOptions
        {
            MaxThreads = 2,
            StartShrinkerMonitor = false,
            ConnectionOptions = SmallRegion(capture.Factory),
        };
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(5, (_, _) => throw new InvalidOperationException("handler bug")));
        server.ClientDisconnected += (_, _) => disconnected.TrySetResult();

        await using (PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, SmallRegion()).AsTask().WaitAsync(TestTimeouts.Long))
        {
            await Assert.ThrowsAsync<RemoteCallException>(() => client.CallAsync(5, new byte[] { 1 }).AsTask().WaitAsync(TestTimeouts.Long));
        }
        await disconnected.Task.WaitAsync(TestTimeouts.Long);

        LogEntry connected = Assert.Single(capture.WithId(PageRangeLogEvents.ClientConnected));
        Assert.Equal(PageRangeLogEvents.ServerCategory, connected.Category);
        Assert.StartsWith($"Client pid {Environment.ProcessId} (uid ", connected.Message, StringComparison.Ordinal);
        LogEntry failed = Assert.Single(capture.WithId(PageRangeLogEvents.HandlerFailed));
        Assert.Equal(LogLevel.Error, failed.Level);
        Assert.Equal($"The handler of code 5 failed on a call from pid {Environment.ProcessId} on '{name}'", failed.Message);
        Assert.Equal("handler bug", failed.Exception?.Message);
        LogEntry gone = Assert.Single(capture.WithId(PageRangeLogEvents.ClientDisconnected));
        Assert.StartsWith($"Client pid {Environment.ProcessId} disconnected from '{name}': ", gone.Message, StringComparison.Ordinal);
        Assert.True(
            Array.IndexOf(capture.Entries, connected) < Array.IndexOf(capture.Entries, failed)
            && Array.IndexOf(capture.Entries, failed) < Array.IndexOf(capture.Entries, gone));
    }

    [Fact]
    public async Task Connection_PeerDisposes_PeerDiedLoggedOnTheOtherSideOnly()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, SmallRegion(capture.Factory));
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, SmallRegion()).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);

        await client.DisposeAsync();
        await Task.Delay(Timeout.Infinite, server.PeerDied).ContinueWith(static _ => { }, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);

        LogEntry died = Assert.Single(capture.WithId(PageRangeLogEvents.PeerDied));
        Assert.Equal(LogLevel.Information, died.Level);
        Assert.Equal($"Peer pid {Environment.ProcessId} on '{name}' is gone; 0 pending calls failed", died.Message);
    }

    [Fact]
    public async Task Send_PeerNeverReceives_RegionFullEpisodeBeganOnceAndEndedOnceWithItsSends()
    {
        using var capture = new LogCapture();
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(SmallRegion(), SmallRegion(capture.Factory));
        byte[] payload = new byte[16 << 10];

        // The server never receives: the oneway quota (half the region) runs out, the next send waits and times out.
        var full = Assert.Throws<RegionFullException>(() =>
        {
            for (int i = 0; i < 64; i++)
            {
                pair.Client.SendOneway(1, payload);
            }
        });
        Assert.NotNull(full);

        LogEntry began = Assert.Single(capture.WithId(PageRangeLogEvents.RegionFullBegan));
        Assert.Equal(LogLevel.Debug, began.Level);
        Assert.Equal(PageRangeLogEvents.TransportCategory, began.Category);
        Assert.Contains($"is full: {payload.Length} bytes wait", began.Message, StringComparison.Ordinal);
        LogEntry ended = Assert.Single(capture.WithId(PageRangeLogEvents.RegionFullEnded));
        Assert.EndsWith("(1 sends waited)", ended.Message, StringComparison.Ordinal);
        Assert.True(Array.IndexOf(capture.Entries, began) < Array.IndexOf(capture.Entries, ended));
    }

    private static async Task<LogEntry[]> WaitForAsync(LogCapture capture, int eventId, int count)
    {
        // The listener logs on its handshake task, after the refusal reached the client: wait for it, bounded.
        using var deadline = new CancellationTokenSource(TestTimeouts.Long);
        while (capture.WithId(eventId).Length < count)
        {
            await Task.Delay(20, deadline.Token);
        }
        return capture.WithId(eventId);
    }
}
