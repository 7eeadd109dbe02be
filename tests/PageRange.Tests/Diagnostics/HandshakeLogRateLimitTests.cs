using System.Net.Sockets;
using PageRange.Diagnostics;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Server;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// Any allowed process can fail handshakes in a tight loop (connect, send garbage or nothing, close): the listener's
/// lines for them are rate-limited, the next line says how many were left out, and the events still see every one.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class HandshakeLogRateLimitTests(ITestOutputHelper output)
{
    private const int Attempts = 30;

    private static PageRangeOptions Options(LogCapture capture) => new()
    {
        RegionSize = PageRangeOptions.MinRegionSize,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        LoggerFactory = capture.Factory,
    };

    [Fact]
    public async Task Listener_LoopOfRefusedAndFailedHandshakes_AtMostTheBurstLogged_NextLineCountsTheRest_EveryEventRaised()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, Options(capture));
        // One window for the whole loop, however slow the machine.
        listener.HandshakeLogForTest.Interval = TimeSpan.FromHours(1);
        int events = 0;
        listener.HandshakeFailed += (_, _) => Interlocked.Increment(ref events);
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();

        await FailHandshakesAsync(name, Attempts, () => Volatile.Read(ref events));

        int burst = listener.HandshakeLogForTest.Burst;
        foreach (LogEntry line in HandshakeLines(capture))
        {
            output.WriteLine($"{line.EventId.Id}: {line.Message}");
        }
        Assert.Equal(burst, HandshakeLines(capture).Length);
        Assert.All(HandshakeLines(capture), line => Assert.EndsWith("(0 more failed or refused handshakes were not logged before this one)", line.Message, StringComparison.Ordinal));
        // Both kinds were among the lines: refusals (the garbage) and failures (the hang-ups).
        Assert.NotEmpty(capture.WithId(PageRangeLogEvents.HandshakeRefused));
        Assert.NotEmpty(capture.WithId(PageRangeLogEvents.HandshakeFailed));

        // The window over, the next line goes out and counts the ones left out.
        listener.HandshakeLogForTest.Interval = TimeSpan.Zero;
        await FailHandshakesAsync(name, 1, () => Volatile.Read(ref events) - Attempts);
        LogEntry[] lines = HandshakeLines(capture);
        Assert.Equal(burst + 1, lines.Length);
        Assert.EndsWith($"({Attempts - burst} more failed or refused handshakes were not logged before this one)", lines[^1].Message, StringComparison.Ordinal);

        Assert.False(accept.IsCompleted);
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Server_LoopOfFailedHandshakes_AtMostTheBurstLogged_EveryEventRaised()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeServerOptions { MaxThreads = 2, StartShrinkerMonitor = false, ConnectionOptions = Options(capture) };
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, static (_, _) => { }));
        server.ListenerForTest.HandshakeLogForTest.Interval = TimeSpan.FromHours(1);
        int events = 0;
        server.HandshakeFailed += (_, _) => Interlocked.Increment(ref events);

        await FailHandshakesAsync(name, Attempts, () => Volatile.Read(ref events));

        Assert.Equal(server.ListenerForTest.HandshakeLogForTest.Burst, HandshakeLines(capture).Length);
        // The server still serves.
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, Options(capture)).AsTask().WaitAsync(TestTimeouts.Long);
        await PageRangeServerTests.WaitUntilAsync(() => server.ClientCount == 1);
    }

    [Fact]
    public async Task Server_LoopOfSessionsThatCannotStart_ItsOwnLinesLimited_NextLineCountsTheRest_EveryClientReported()
    {
        using var capture = new LogCapture();
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeServerOptions { MaxThreads = 2, StartShrinkerMonitor = false, ConnectionOptions = Options(capture) };
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, static (_, _) => { }));
        server.HandshakeLogForTest.Interval = TimeSpan.FromHours(1);
        // The server's own line: a client whose handshake passed but whose session could not start (a pid limit).
        server.SessionStartingForTest = static () => throw new InvalidOperationException("Thread failed to start: the pid limit.");
        int ended = 0;
        server.ClientDisconnected += (_, _) => Interlocked.Increment(ref ended);

        for (int i = 0; i < Attempts; i++)
        {
            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, Options(capture)).AsTask().WaitAsync(TestTimeouts.Long);
            await PageRangeServerTests.WaitUntilAsync(() => Volatile.Read(ref ended) == i + 1);
        }
        LogEntry[] ownLines() => [.. HandshakeLines(capture).Where(line => line.Category == PageRangeLogEvents.ServerCategory)];
        Assert.Equal(server.HandshakeLogForTest.Burst, ownLines().Length);

        server.HandshakeLogForTest.Interval = TimeSpan.Zero;
        await using (PageRangeConnection last = await PageRangeConnection.ConnectAsync(name, Options(capture)).AsTask().WaitAsync(TestTimeouts.Long))
        {
            await PageRangeServerTests.WaitUntilAsync(() => Volatile.Read(ref ended) == Attempts + 1);
        }
        Assert.Equal(server.HandshakeLogForTest.Burst + 1, ownLines().Length);
        Assert.EndsWith($"({Attempts - server.HandshakeLogForTest.Burst} more failed or refused handshakes were not logged before this one)", ownLines()[^1].Message, StringComparison.Ordinal);
    }

    private static LogEntry[] HandshakeLines(LogCapture capture) =>
        [.. capture.Entries.Where(entry => entry.EventId.Id is PageRangeLogEvents.HandshakeRefused or PageRangeLogEvents.HandshakeFailed)];

    /// <summary>Connects <paramref name="count"/> times, alternately sending garbage (refused) and nothing (failed), each
    /// once <paramref name="seen"/> counted the one before: one at a time, so none meets the process's share of handshakes.</summary>
    private static async Task FailHandshakesAsync(string name, int count, Func<int> seen)
    {
        using var deadline = new CancellationTokenSource(TestTimeouts.Long);
        for (int i = 0; i < count; i++)
        {
            using (Socket bad = await ControlPlaneHostileTests.ConnectRawAsync(name))
            {
                if (i % 2 == 0)
                {
                    await bad.SendAsync(new byte[] { 0, 0, 0, 0 });
                }
                bad.Shutdown(SocketShutdown.Send);
            }
            while (seen() < i + 1)
            {
                await Task.Delay(5, deadline.Token);
            }
        }
        Assert.Equal(count, seen());
    }
}
