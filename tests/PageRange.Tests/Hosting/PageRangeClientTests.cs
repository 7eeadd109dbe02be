using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using PageRange.Hosting;
using PageRange.Server;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Hosting;

/// <summary>The reconnecting client in one process: no server, a server that appears, stops and comes back; its backoff.</summary>
public sealed class PageRangeClientTests
{
    private const uint Echo = 1;

    private static PageRangeServerOptions ServerOptions() => new()
    {
        MaxThreads = 2,
        StartShrinkerMonitor = false,
        ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20 },
    };

    private static PageRangeServer StartServer(string name, byte mark) =>
        PageRangeServer.Start(name, ServerOptions(), server => server.Map(Echo, (Transaction tx, CallContext _) => tx.Reply([mark])));

    private static IHost BuildClientHost(string name, TimeSpan reconnectDelay) => HostingTestHost.Build(services => services
        .AddPageRangeClient(name, options =>
        {
            options.ReconnectDelay = reconnectDelay;
            options.MaxReconnectDelay = reconnectDelay * 4;
            options.ReconnectJitter = 0;
            options.ConnectionOptions.RegionSize = 1L << 20;
        }));

    [Fact]
    public async Task Call_NoServer_FailsAtOnceNamingTheServerAndTheNextAttempt()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = BuildClientHost(name, TimeSpan.FromSeconds(30));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);

        ServerUnavailableException first = await Assert.ThrowsAsync<ServerUnavailableException>(
            () => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(name, first.ServerName);
        Assert.Equal(name, first.ClientName);
        Assert.Equal(1, first.FailedAttempts);
        Assert.Contains($"PageRange server '{name}' is unavailable", first.Message, StringComparison.Ordinal);
        Assert.Contains("next attempt is at", first.Message, StringComparison.Ordinal);
        Assert.InRange(first.RetryAt, DateTimeOffset.UtcNow.AddSeconds(10), DateTimeOffset.UtcNow.AddSeconds(31));
        Assert.IsType<PageRangeException>(first.InnerException, exactMatch: false);

        // Within the backoff no attempt is made (the count stays), even with a server now listening; sync calls too.
        await using PageRangeServer server = StartServer(name, 1);
        ServerUnavailableException second = Assert.Throws<ServerUnavailableException>(() => client.Call(Echo, []));
        Assert.Equal(1, second.FailedAttempts);
        Assert.Equal(first.RetryAt, second.RetryAt);
        Assert.Throws<ServerUnavailableException>(() => client.SendOneway(Echo, []));
        Assert.False(client.IsConnected);
    }

    [Fact]
    public async Task Call_FirstUseOnAThreadWithASingleThreadedContext_ConnectsWithoutDeadlock()
    {
        // A UI thread's context runs what is posted to it only when that thread pumps: a first synchronous call there,
        // which blocks the thread on the connect, deadlocked while the connect resumed on the caller's context.
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeServer server = StartServer(name, 5);
        using IHost host = BuildClientHost(name, TimeSpan.FromMilliseconds(50));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);

        byte answer = 0;
        Exception? failure = null;
        var context = new NeverPumpedContext();
        var uiThread = new Thread(() =>
        {
            SynchronizationContext.SetSynchronizationContext(context);
            try
            {
                using Transaction reply = client.Call(Echo, [], TestTimeouts.Long);
                answer = reply.Payload[0];
            }
            catch (Exception error)
            {
                failure = error;
            }
        })
        { IsBackground = true, Name = "never-pumped UI thread" };
        uiThread.Start();
        if (!uiThread.Join(TestTimeouts.Long))
        {
            // Deadlocked: run what was posted elsewhere, so the call and the host can end, then fail.
            context.RunPostedElsewhere();
            Assert.Fail("the first call on the UI thread deadlocked on its own context");
        }
        Assert.Null(failure);
        Assert.Equal(5, answer);
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    /// <summary>A context whose thread never pumps: what is posted to it waits, as on a UI thread blocked in a call.</summary>
    private sealed class NeverPumpedContext : SynchronizationContext
    {
        private readonly ConcurrentQueue<(SendOrPostCallback Callback, object? State)> _posted = new();

        public override void Post(SendOrPostCallback d, object? state) => _posted.Enqueue((d, state));

        /// <summary>Runs what was posted on the calling thread (a failed test's way out of the deadlock).</summary>
        public void RunPostedElsewhere()
        {
            while (_posted.TryDequeue(out (SendOrPostCallback Callback, object? State) posted))
            {
                posted.Callback(posted.State);
            }
        }

        public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException();
    }

    [Fact]
    public async Task Call_ServerStartsLater_ConnectsOnceTheBackoffEnds()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = BuildClientHost(name, TimeSpan.FromMilliseconds(200));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        await Assert.ThrowsAsync<ServerUnavailableException>(() => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));

        await using PageRangeServer server = StartServer(name, 7);
        byte answer = await CallUntilConnectedAsync(client);
        Assert.Equal(7, answer);
        Assert.True(client.IsConnected);
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Call_ServerStoppedAndRestarted_FailsClearlyThenReconnects()
    {
        string name = ControlHandshakeTests.UniqueName();
        using IHost host = BuildClientHost(name, TimeSpan.FromMilliseconds(50));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);

        PageRangeServer first = StartServer(name, 1);
        Assert.Equal(1, await CallUntilConnectedAsync(client));
        await first.StopAsync().WaitAsync(TestTimeouts.Long);

        ServerUnavailableException lost = await Assert.ThrowsAsync<ServerUnavailableException>(
            () => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(name, lost.ServerName);
        Assert.False(client.IsConnected);

        await using PageRangeServer second = StartServer(name, 2);
        Assert.Equal(2, await CallUntilConnectedAsync(client));
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Dispose_WithTheHost_ClosesTheConnectionAndRefusesLaterUse()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeServer server = StartServer(name, 1);
        IHost host = BuildClientHost(name, TimeSpan.FromMilliseconds(50));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        Assert.Equal(1, await CallUntilConnectedAsync(client));
        await HostingTestHost.WaitUntilAsync(() => server.ClientCount == 1, "the server to count the client");

        await host.StopAsync().WaitAsync(TestTimeouts.Long);
        host.Dispose();

        await HostingTestHost.WaitUntilAsync(() => server.ClientCount == 0, "the server to see the client leave");
        Assert.Throws<ObjectDisposedException>(() => client.Call(Echo, []));
    }

    [Fact]
    public async Task StructCalls_ThroughTheClient_RoundTripAndFailClearlyWithoutAServer()
    {
        string name = ControlHandshakeTests.UniqueName();
        var oneways = new System.Collections.Concurrent.ConcurrentQueue<long>();
        PageRangeServer server = PageRangeServer.Start(name, ServerOptions(), builder => builder
            .Map(Echo, (Transaction tx, CallContext _) => tx.Reply([1]))
            .MapStruct<long, double>(2, (value, _) => value / 2.0)
            .MapOnewayStruct<long>(3, (value, _) => oneways.Enqueue(value)));
        using IHost host = BuildClientHost(name, TimeSpan.FromMilliseconds(50));
        await host.StartAsync().WaitAsync(TestTimeouts.Long);
        PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);
        Assert.Equal(1, await CallUntilConnectedAsync(client));

        Assert.Equal(21.5, client.CallStruct<long, double>(2, 43L, TestTimeouts.Long));
        Assert.Equal(-3.0, await client.CallStructAsync<long, double>(2, -6L, TestTimeouts.Long));
        client.SendOnewayStruct(3, 99L);
        await HostingTestHost.WaitUntilAsync(() => oneways.Contains(99L), "the server to handle the oneway struct");

        await server.StopAsync().WaitAsync(TestTimeouts.Long);
        await server.DisposeAsync();
        await Assert.ThrowsAsync<ServerUnavailableException>(
            () => client.CallStructAsync<long, double>(2, 1L, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Throws<ServerUnavailableException>(() => client.CallStruct<long, double>(2, 1L, TestTimeouts.Long));
        Assert.Throws<ServerUnavailableException>(() => client.SendOnewayStruct(3, 1L));
        await host.StopAsync().WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Call_ServerDropsEachConnectionAtOnce_BacksOffBetweenHandshakesUntilOneLasts()
    {
        // A raw listener stands for a server that admits a client and drops it at once (crash loop, a session failing at
        // start). The client's clock only moves when the test moves it, so what is checked is the schedule, not speed.
        string name = ControlHandshakeTests.UniqueName();
        var clock = new ManualClock();
        using var logs = new LogCapture();
        int handshakes = 0;
        bool keep = false;
        var kept = new ConcurrentQueue<PageRangeConnection>();
        PageRangeListener listener = PageRangeListener.Listen(name, new PageRangeOptions { RegionSize = 1L << 20 });
        Task accepting = Task.Run(async () =>
        {
            while (true)
            {
                PageRangeConnection accepted;
                try
                {
                    accepted = await listener.AcceptAsync();
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                Interlocked.Increment(ref handshakes);
                if (Volatile.Read(ref keep))
                {
                    kept.Enqueue(accepted);
                }
                else
                {
                    await accepted.DisposeAsync();
                }
            }
        });
        try
        {
            using IHost host = HostingTestHost.Build(services => services
                .AddSingleton<TimeProvider>(clock)
                .AddPageRangeClient(name, options =>
                {
                    options.ReconnectDelay = TimeSpan.FromSeconds(1);
                    options.MaxReconnectDelay = TimeSpan.FromSeconds(8);
                    options.ReconnectJitter = 0;
                    options.HealthyConnectionTime = TimeSpan.FromSeconds(10);
                    options.ConnectionOptions.RegionSize = 1L << 20;
                }), logs);
            await host.StartAsync().WaitAsync(TestTimeouts.Long);
            PageRangeClient client = host.Services.GetRequiredKeyedService<PageRangeClient>(name);

            // Each call connects or is refused, and fails: the server never answers. Only the first one may connect;
            // the rest fall in the backoff that the dropped connection started (they reconnected every time before).
            ServerUnavailableException last = await FailCallsAsync(client, 20);
            Assert.Equal(1, Volatile.Read(ref handshakes));
            Assert.Equal(1, last.FailedAttempts);
            Assert.Equal(clock.GetUtcNow() + TimeSpan.FromSeconds(1), last.RetryAt);
            Assert.Contains("after it was made", last.Message, StringComparison.Ordinal);

            // Once the wait is over one use connects, is dropped again, and the wait doubles.
            clock.Advance(TimeSpan.FromSeconds(1));
            last = await FailCallsAsync(client, 5);
            Assert.Equal((2, 2), (Volatile.Read(ref handshakes), last.FailedAttempts));
            clock.Advance(TimeSpan.FromSeconds(1));
            await FailCallsAsync(client, 5);
            Assert.Equal(2, Volatile.Read(ref handshakes));
            clock.Advance(TimeSpan.FromSeconds(1));
            last = await FailCallsAsync(client, 5);
            Assert.Equal((3, 3), (Volatile.Read(ref handshakes), last.FailedAttempts));

            // A connection that lasts HealthyConnectionTime is a success: its loss lets the next use connect at once,
            // and the count starts again from there.
            Volatile.Write(ref keep, true);
            clock.Advance(TimeSpan.FromSeconds(4));
            await client.GetConnectionAsync().AsTask().WaitAsync(TestTimeouts.Long);
            // The client's handshake ends before the listener hands the connection over: wait for that side too.
            await HostingTestHost.WaitUntilAsync(() => !kept.IsEmpty, "the listener to keep the connection");
            Assert.Equal(4, Volatile.Read(ref handshakes));
            clock.Advance(TimeSpan.FromSeconds(10));
            Volatile.Write(ref keep, false);
            Assert.True(kept.TryDequeue(out PageRangeConnection? lasting));
            await lasting.DisposeAsync();
            await HostingTestHost.WaitUntilAsync(() => !client.IsConnected, "the client to see the lasting connection end");
            last = await FailCallsAsync(client, 1);
            Assert.Equal((5, 1), (Volatile.Read(ref handshakes), last.FailedAttempts));

            // One line per loss: the early ones say when the next attempt is, the lasting one is a plain loss.
            await HostingTestHost.WaitUntilAsync(
                () => logs.WithId(PageRangeHostingLogEvents.ClientConnectionLostEarly).Length == 4 && logs.WithId(PageRangeHostingLogEvents.ClientConnectionLost).Length == 1,
                "the client to log four early losses and one plain one");
            Assert.Contains("counted as a failed attempt (3 failed in a row); next attempt in 4000 ms",
                logs.WithId(PageRangeHostingLogEvents.ClientConnectionLostEarly)[2].Message, StringComparison.Ordinal);
            await host.StopAsync().WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            await listener.DisposeAsync();
            await accepting.WaitAsync(TestTimeouts.Long);
            while (kept.TryDequeue(out PageRangeConnection? left))
            {
                await left.DisposeAsync();
            }
        }
    }

    /// <summary>Makes <paramref name="count"/> calls that must each fail as unavailable; returns the last failure.</summary>
    private static async Task<ServerUnavailableException> FailCallsAsync(PageRangeClient client, int count)
    {
        ServerUnavailableException? last = null;
        for (int i = 0; i < count; i++)
        {
            last = await Assert.ThrowsAsync<ServerUnavailableException>(
                () => client.CallAsync(Echo, ReadOnlyMemory<byte>.Empty, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
        }
        return last!;
    }

    /// <summary>A clock that stands still until the test moves it.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private static readonly DateTimeOffset s_start = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        private long _ticks = TimeSpan.TicksPerHour;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Volatile.Read(ref _ticks);

        public override DateTimeOffset GetUtcNow() => s_start + TimeSpan.FromTicks(GetTimestamp());

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }

    [Theory]
    [InlineData(1, 100)]
    [InlineData(2, 200)]
    [InlineData(4, 800)]
    [InlineData(7, 1000)]
    [InlineData(1000, 1000)]
    public void Backoff_NoJitter_DoublesUpToTheCap(int failedAttempts, int expectedMilliseconds)
    {
        TimeSpan delay = ReconnectBackoff.Delay(failedAttempts, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1), jitter: 0, random: 0.9);
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMilliseconds), delay);
    }

    [Fact]
    public void Backoff_Jitter_SpreadsWithinTheFractionAndNeverPassesTheCap()
    {
        TimeSpan initial = TimeSpan.FromMilliseconds(100);
        TimeSpan max = TimeSpan.FromSeconds(1);
        Assert.Equal(TimeSpan.FromMilliseconds(80), ReconnectBackoff.Delay(1, initial, max, jitter: 0.2, random: 0));
        Assert.Equal(TimeSpan.FromMilliseconds(120), ReconnectBackoff.Delay(1, initial, max, jitter: 0.2, random: 1));
        Assert.Equal(max, ReconnectBackoff.Delay(10, initial, max, jitter: 0.2, random: 1));
        Assert.Equal(TimeSpan.FromMilliseconds(800), ReconnectBackoff.Delay(10, initial, max, jitter: 0.2, random: 0));
    }

    /// <summary>Calls until the client connects (each failure a ServerUnavailableException), waiting out each backoff; returns the reply's first byte.</summary>
    internal static Task<byte> CallUntilConnectedAsync(PageRangeClient client) =>
        CallUntilConnectedAsync(client, Echo, static payload => payload[0]);

    /// <summary>Calls <paramref name="code"/> until the client connects, waiting out each backoff; returns what <paramref name="read"/> makes of the reply.</summary>
    internal static async Task<T> CallUntilConnectedAsync<T>(PageRangeClient client, uint code, Func<byte[], T> read)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using Transaction reply = await client.CallAsync(code, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
                return read(reply.Payload.ToArray());
            }
            catch (ServerUnavailableException unavailable) when (clock.Elapsed < TestTimeouts.Long)
            {
                TimeSpan wait = unavailable.RetryAt - DateTimeOffset.UtcNow;
                await Task.Delay(wait > TimeSpan.FromMilliseconds(5) ? wait : TimeSpan.FromMilliseconds(5));
            }
        }
    }
}
