using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Raw clients that misbehave during the handshake against a real listener in this process: silent ones, ones that
/// leave half-way, ones that send garbage. The listener goes on accepting the honest ones, and what the bad ones cost
/// (descriptors, regions, mappings) comes back.
/// </summary>
/// <remarks>In the non-parallel collection because the tests count this process's descriptors.</remarks>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ControlPlaneHostileTests
{
    private static PageRangeOptions NewOptions() =>
        new() { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };

    [Fact]
    public async Task Accept_TwentySilentClients_HonestClientIsAcceptedWithoutWaitingForThem()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        // Deadlines far beyond the test's own bound: if one silent client could delay another, the honest one would wait.
        PageRangeOptions options = NewOptions();
        options.ConnectTimeout = TimeSpan.FromMinutes(5);
        options.HelloTimeout = TimeSpan.FromMinutes(5);
        var silent = new List<Socket>();
        try
        {
            await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
            {
                var failures = new ListenerFailures(listener);
                Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
                for (int i = 0; i < 20; i++)
                {
                    silent.Add(await ConnectRawAsync(name));
                }

                var clock = Stopwatch.StartNew();
                await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
                await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);

                Assert.True(clock.Elapsed < options.HelloTimeout, $"the honest client took {clock.Elapsed}");
                Assert.Equal(Environment.ProcessId, server.PeerPid);
                Assert.Empty(failures.Seen);
                // A silent client costs a socket, not a region: ours is created only once a hello passed its checks.
                Assert.Equal((4, 6), FaultResources.Naming($"pagerange:{name}"));
            }

            // Disposing the listener ends every handshake in progress: each silent client sees its socket close.
            foreach (Socket socket in silent)
            {
                Assert.Equal(0, await socket.ReceiveAsync(new byte[64]).WaitAsync(TestTimeouts.Long));
            }
        }
        finally
        {
            foreach (Socket socket in silent)
            {
                socket.Dispose();
            }
        }
        AssertBackTo(baseline, name);
    }

    [Fact]
    public async Task Accept_SilentClientsTimeOut_EachOnItsOwnDeadline()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        options.HelloTimeout = TimeSpan.FromSeconds(1);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = new ListenerFailures(listener);
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();
        var silent = new List<Socket>();
        try
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < 5; i++)
            {
                silent.Add(await ConnectRawAsync(name));
            }

            for (int i = 0; i < 5; i++)
            {
                var timeout = Assert.IsType<TimeoutException>(await failures.NextAsync());
                Assert.Contains("it sent no hello within", timeout.Message, StringComparison.Ordinal);
            }
            // Five one-second deadlines that ran one after the other would take five seconds at least.
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(4.5), $"the five deadlines took {clock.Elapsed}");
            Assert.False(accept.IsCompleted);
        }
        finally
        {
            foreach (Socket socket in silent)
            {
                socket.Dispose();
            }
        }
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Theory]
    [InlineData("close-at-once")]
    [InlineData("half-header")]
    [InlineData("half-frame")]
    [InlineData("huge-length")]
    [InlineData("zero-length")]
    [InlineData("not-msgpack")]
    [InlineData("unknown-kind")]
    [InlineData("ready-first")]
    [InlineData("hello-without-fields")]
    public async Task Accept_BadClient_IsAHandshakeFailureAndTheNextClientIsAccepted(string kind)
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        {
            var failures = new ListenerFailures(listener);
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            using (Socket bad = await ConnectRawAsync(name))
            {
                byte[] bytes = kind switch
                {
                    "close-at-once" => [],
                    "half-header" => [8, 0],
                    "half-frame" => [8, 0, 0, 0, 0x93, 1],
                    "huge-length" => [0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
                    "zero-length" => [0, 0, 0, 0],
                    "not-msgpack" => [3, 0, 0, 0, 0xc1, 0xc1, 0xc1],
                    "unknown-kind" => [3, 0, 0, 0, 0x92, 0x63, 0x01],
                    "ready-first" => [2, 0, 0, 0, 0x91, 0x03],
                    _ => [2, 0, 0, 0, 0x91, 0x01],
                };
                if (bytes.Length > 0)
                {
                    await bad.SendAsync(bytes);
                }
                bad.Shutdown(SocketShutdown.Send);
                Exception failure = await failures.NextAsync();
                Assert.True(failure is ConnectionRefusedException or PeerDiedException or TimeoutException, failure.ToString());
                Assert.Equal(Environment.ProcessId, failures.LastArgs!.PeerPid);
            }

            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
            await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
            Assert.Equal(Environment.ProcessId, server.PeerPid);
        }
        AssertBackTo(baseline, name);
    }

    [Fact]
    public async Task Accept_ClientLeavesAfterItsHello_RegionOfferedToItIsClosed()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        {
            var failures = new ListenerFailures(listener);
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            // A client that sends a valid hello with its memfd, then closes instead of answering with Ready.
            using (var own = PageRangeConnection.CreateInbound($"{name}-client", options))
            using (Socket raw = await ConnectRawAsync(name))
            {
                byte[] hello = ControlFrameCodec.Encode(ControlHandshake.CreateHello(options, own.Region));
                Assert.True(Interop.TrySendMessage(raw.SafeHandle, hello, own.Region.Handle, out int sent));
                Assert.Equal(hello.Length, sent);
                // The listener answers with its hello and memfd; read (and so receive and close) them, then leave.
                byte[] answer = new byte[256];
                Assert.True(await raw.ReceiveAsync(answer).WaitAsync(TestTimeouts.Long) > 0);
            }
            Assert.IsType<PeerDiedException>(await failures.NextAsync());

            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
            await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        }
        AssertBackTo(baseline, name);
    }

    [Fact]
    public async Task Admit_RefusesAPeer_ReasonReachesTheEventAndNotThePeer()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = new ListenerFailures(listener);
        Interop.PeerCredentials? asked = null;
        listener.Admit = peer =>
        {
            asked = peer;
            return "MaxClients (3) reached";
        };
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.True(refused.RefusedByPeer);
        Assert.DoesNotContain("MaxClients", refused.Message, StringComparison.Ordinal);
        Assert.Contains("refused the connection", refused.Message, StringComparison.Ordinal);
        var ours = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.Contains("MaxClients (3) reached", ours.Message, StringComparison.Ordinal);
        Assert.Equal(Interop.GetEffectiveUserId(), failures.LastArgs!.PeerUid);
        Assert.Equal(Environment.ProcessId, asked?.Pid);
        Assert.False(accept.IsCompleted);

        // Admitted again, the next one connects.
        listener.Admit = static _ => null;
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accept.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task HandshakeFailed_HandlerThrows_ListenerKeepsAccepting()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        listener.HandshakeFailed += (_, _) => throw new InvalidOperationException("a buggy handler");
        var failures = new ListenerFailures(listener);
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        using (Socket bad = await ConnectRawAsync(name))
        {
            await bad.SendAsync(new byte[] { 0, 0, 0, 0 });
            await failures.NextAsync();
        }

        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Accept_ManyHonestClientsAtOnce_EveryOneIsAccepted()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<PageRangeConnection>[] connecting = Enumerable.Range(0, 8)
            .Select(_ => PageRangeConnection.ConnectAsync(name, options).AsTask()).ToArray();
        var servers = new List<PageRangeConnection>();
        try
        {
            for (int i = 0; i < connecting.Length; i++)
            {
                servers.Add(await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long));
            }
            PageRangeConnection[] clients = await Task.WhenAll(connecting).WaitAsync(TestTimeouts.Long);
            foreach (PageRangeConnection client in clients)
            {
                await client.DisposeAsync();
            }
        }
        finally
        {
            foreach (PageRangeConnection server in servers)
            {
                await server.DisposeAsync();
            }
        }
    }

    internal static async Task<Socket> ConnectRawAsync(string name)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(ControlHandshake.GetEndPoint(name)).WaitAsync(TestTimeouts.Long);
        return socket;
    }

    internal static void AssertBackTo(FaultResources baseline, string name)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        FaultResources after = FaultResources.Now();
        Assert.Equal((0, 0), FaultResources.Naming($"pagerange:{name}"));
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
        Assert.Equal(baseline.Descriptors, after.Descriptors);
    }

    /// <summary>The listener's failed handshakes, in order.</summary>
    internal sealed class ListenerFailures
    {
        private readonly System.Threading.Channels.Channel<Exception> _failures = System.Threading.Channels.Channel.CreateUnbounded<Exception>();
        private readonly List<Exception> _seen = [];

        public ListenerFailures(PageRangeListener listener) =>
            listener.HandshakeFailed += (_, e) =>
            {
                lock (_seen)
                {
                    _seen.Add(e.Exception);
                    LastArgs = e;
                }
                _failures.Writer.TryWrite(e.Exception);
            };

        public HandshakeFailedEventArgs? LastArgs { get; private set; }

        public IReadOnlyList<Exception> Seen
        {
            get
            {
                lock (_seen)
                {
                    return [.. _seen];
                }
            }
        }

        public async Task<Exception> NextAsync() => await _failures.Reader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long);
    }
}
