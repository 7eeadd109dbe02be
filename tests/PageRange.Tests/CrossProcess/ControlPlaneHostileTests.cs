using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using PageRange.Memory;
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
        FaultResources baseline = await SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        // Deadlines far beyond the test's own bound: if one silent client could delay another, the honest one would wait.
        PageRangeOptions options = NewOptions();
        options.ConnectTimeout = TimeSpan.FromMinutes(5);
        options.HelloTimeout = TimeSpan.FromMinutes(5);
        // The silent clients and the honest one are all this process: its share of the handshakes must hold them all
        // (HandshakeShareTests shows what the share does).
        options.MaxHandshakesPerProcess = PageRangeListener.MaxConcurrentHandshakes;
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
        FaultResources baseline = await SettledAsync();
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

            await NextClientIsAcceptedAsync(name, options, accepting);
        }
        AssertBackTo(baseline, name);
    }

    [Fact]
    public async Task Accept_ClientLeavesAfterItsHello_RegionOfferedToItIsClosed()
    {
        FaultResources baseline = await SettledAsync();
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

            await NextClientIsAcceptedAsync(name, options, accepting);
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
        await NextClientIsAcceptedAsync(name, options, accept);
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

        await NextClientIsAcceptedAsync(name, options, accepting);
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

    [Fact]
    public async Task Connection_PeerFloodsDescriptorsAfterTheHandshake_ClosedAtOnceAndEveryDescriptorClosed()
    {
        FaultResources baseline = await SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        string floodName = $"flood-{Guid.NewGuid():N}";
        PageRangeOptions options = NewOptions();
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        using (SafeMemfdHandle flood = Interop.MemfdCreate(floodName))
        using (InboundChannel own = PageRangeConnection.CreateInbound($"{name}-raw", options))
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            using Socket raw = await RawConnectAsync(name, options, own.Region);
            await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
            Assert.True(server.IsPeerAlive);

            int sent = SendDescriptors(raw, flood, count: 200);

            await ControlHandshakeTests.WaitCancelledAsync(server.PeerDied);
            Assert.False(server.IsPeerAlive);
            Assert.True(sent >= 1);
            // Our own memfd is the only descriptor naming it: every one the victim received was closed at once.
            Assert.Equal(1, FaultResources.Naming(floodName).Descriptors);
            // And the raw peer learns at once that the connection is over.
            Assert.Equal(0, await DrainUntilEofAsync(raw));
        }
        AssertBackTo(baseline, name);
    }

    [Fact]
    public Task Accept_PeerFloodsDescriptorsDuringTheHandshake_HandshakeFailsAndEveryDescriptorIsClosed() =>
        HandshakeWithExtraDescriptorsAsync(
            (raw, hello, own, flood) =>
            {
                Assert.True(Interop.TrySendMessage(raw.SafeHandle, hello, own.Handle, out _));
                SendDescriptors(raw, flood, count: 100);
                return Task.CompletedTask;
            },
            failure => Assert.True(failure is ConnectionRefusedException or PeerDiedException, failure.ToString()));

    [Fact]
    public Task Accept_TwoDescriptorsWithTheHello_RefusedAndBothClosed() =>
        HandshakeWithExtraDescriptorsAsync(
            (raw, hello, own, extra) =>
            {
                Assert.True(Interop.TrySendMessage(raw.SafeHandle, hello, [own.Handle, extra], out _));
                return Task.CompletedTask;
            },
            failure =>
            {
                var refused = Assert.IsType<ConnectionRefusedException>(failure);
                Assert.IsType<ProtocolViolationException>(refused.InnerException);
            });

    [Fact]
    public Task Accept_DescriptorInTheSameReceiveAsReady_HandshakeFailsAndTheDescriptorIsClosed() =>
        // A client whose handshake is done on its side (its Ready is sent) and that passes a descriptor at once: when the
        // listener's control socket takes both in one receive before its handshake read the Ready (a starved listener,
        // as the server isolation test meets it), the handshake fails instead of becoming a connection. Here Ready and
        // the next frame go in one message carrying the descriptor, so that receive is certain.
        HandshakeWithExtraDescriptorsAsync(
            async (raw, hello, own, extra) =>
            {
                Assert.True(Interop.TrySendMessage(raw.SafeHandle, hello, own.Handle, out _));
                await ReadListenerHelloAsync(raw);
                byte[] readyThenCancel = [.. ControlFrameCodec.Encode(new ReadyMessage()), .. ControlFrameCodec.Encode(new CancelMessage(1))];
                Assert.True(Interop.TrySendMessage(raw.SafeHandle, readyThenCancel, extra, out _));
            },
            failure => Assert.True(failure is ConnectionRefusedException or PeerDiedException, failure.ToString()));

    [Fact]
    public async Task Send_PeerStopsReadingItsControlSocket_SendTimesOutAndTheConnectionCloses()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        options.ControlSendTimeout = TimeSpan.FromSeconds(1);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        using SharedRegion acceptorRegion = ControlHandshakeTests.CreateRegion("test-acceptor");
        using SharedRegion connectorRegion = ControlHandshakeTests.CreateRegion("test-connector");
        ValueTask<(HandshakeResult, SharedRegion)> accepting = listener.AcceptHandshakeAsync(
            () => ControlHandshakeTests.CreateRegion("test-acceptor-own"), static region => region, CancellationToken.None);
        await using HandshakeResult connector = await ControlHandshake.ConnectAsync(name, options, connectorRegion, CancellationToken.None)
            .AsTask().WaitAsync(TestTimeouts.Long);
        (HandshakeResult acceptor, SharedRegion acceptorOwn) = await accepting.AsTask().WaitAsync(TestTimeouts.Long);
        await using (acceptor)
        using (acceptorOwn)
        {
            // The acceptor never starts its watch: nobody reads its control socket beyond the pipe's 64 KiB.
            connector.Control.StartWatching();
            var clock = Stopwatch.StartNew();
            PeerDiedException stalled = await Assert.ThrowsAsync<PeerDiedException>(async () =>
            {
                for (ulong id = 1; ; id++)
                {
                    await connector.Control.SendCancelAsync(id).AsTask().WaitAsync(TestTimeouts.Long);
                }
            });

            Assert.Contains("stopped reading it", stalled.Message, StringComparison.Ordinal);
            await ControlHandshakeTests.WaitCancelledAsync(connector.Control.PeerDied);
            Assert.Same(stalled, connector.Control.CloseReason);
            Assert.True(clock.Elapsed < TestTimeouts.Long);
            // Later sends fail at once instead of queueing behind the stalled one.
            await Assert.ThrowsAsync<PeerDiedException>(() => connector.Control.SendCancelAsync(0).AsTask().WaitAsync(TestTimeouts.Short));
        }
    }

    [Fact]
    public async Task Connection_PeerInAnotherPidNamespace_NotDeclaredDeadByTheBackstopOnEitherSide()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = NewOptions();
        options.WaitStrategy = WaitStrategy.Park;
        options.ParkTimeout = TimeSpan.FromMilliseconds(10);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        using TestHostProcess host = TestHostProcess.Start(null, "hostile-pidns-connect", name);

        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        int innerPid = int.Parse(host.ReadUntil("own-pid: "), System.Globalization.CultureInfo.InvariantCulture);
        // In its own pid namespace the host cannot see our pid: SO_PEERCRED shows it 0, and that must not read as death.
        Assert.Equal("0", host.ReadUntil("peer-pid: "));
        Assert.Equal("True", host.ReadUntil("alive: "));
        // On our side its pid is visible but is not the one its hello names: not watched, so not declared dead either.
        Assert.NotEqual(innerPid, server.PeerPid);
        // The host stays connected until told to quit, so this checks the backstop, not a race with its exit.
        Assert.True(server.IsPeerAlive);
        Assert.False(server.PeerDied.IsCancellationRequested);
        host.WriteLine("quit");
        Assert.Equal(0, host.WaitForExit());
        // Its death still arrives, by the socket's end-of-file.
        await ControlHandshakeTests.WaitCancelledAsync(server.PeerDied);
    }

    /// <summary>The listener goes on: an honest client from this process connects, and the pending accept returns it.</summary>
    private static async Task NextClientIsAcceptedAsync(string name, PageRangeOptions options, Task<PageRangeConnection> accepting)
    {
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        Assert.Equal(Environment.ProcessId, server.PeerPid);
    }

    /// <summary>Sends up to <paramref name="count"/> one-byte messages, each passing <paramref name="descriptor"/>; stops when the victim closes.</summary>
    private static int SendDescriptors(Socket raw, SafeMemfdHandle descriptor, int count)
    {
        int sent = 0;
        try
        {
            for (; sent < count; sent++)
            {
                if (!Interop.TrySendMessage(raw.SafeHandle, [0], descriptor, out _))
                {
                    break;
                }
            }
        }
        catch (SystemCallException)
        {
            // EPIPE or ECONNRESET: the victim closed the connection, which is what these tests want.
        }
        return sent;
    }

    /// <summary>Reads (and closes any descriptor) until the peer's end; returns the last read's length, 0 at EOF.</summary>
    private static async Task<int> DrainUntilEofAsync(Socket raw)
    {
        byte[] buffer = new byte[4096];
        while (true)
        {
            int ready;
            try
            {
                ready = await raw.ReceiveAsync(buffer.AsMemory(0, 1), SocketFlags.Peek).AsTask().WaitAsync(TestTimeouts.Long);
            }
            catch (SocketException)
            {
                return 0;
            }
            if (ready == 0)
            {
                return 0;
            }
            if (Interop.TryReceiveMessage(raw.SafeHandle, buffer, out int received, out SafeMemfdHandle? descriptor))
            {
                descriptor?.Dispose();
                if (received == 0)
                {
                    return 0;
                }
            }
        }
    }

    /// <summary>
    /// The connecting side written by hand, as a hostile client would: hello with <paramref name="own"/>'s memfd, the
    /// listener's hello read with recvmsg (its memfd closed at once), then Ready.
    /// </summary>
    internal static async Task<Socket> RawConnectAsync(string name, PageRangeOptions options, SharedRegion own)
    {
        Socket socket = await ConnectRawAsync(name);
        byte[] hello = ControlFrameCodec.Encode(ControlHandshake.CreateHello(options, own));
        Assert.True(Interop.TrySendMessage(socket.SafeHandle, hello, own.Handle, out int sent));
        Assert.Equal(hello.Length, sent);
        await ReadListenerHelloAsync(socket);
        await socket.SendAsync(ControlFrameCodec.Encode(new ReadyMessage()));
        return socket;
    }

    /// <summary>Reads the listener's answer to our hello, one frame, with recvmsg; the memfd that comes with it is closed at once.</summary>
    private static async Task ReadListenerHelloAsync(Socket socket)
    {
        byte[] frame = new byte[ControlFrameCodec.HeaderLength + ControlFrameCodec.MaxBodyLength];
        int have = 0;
        while (have < ControlFrameCodec.HeaderLength || have < ControlFrameCodec.HeaderLength + BinaryPrimitives.ReadInt32LittleEndian(frame))
        {
            Assert.True(await socket.ReceiveAsync(new byte[1].AsMemory(), SocketFlags.Peek).AsTask().WaitAsync(TestTimeouts.Long) > 0);
            if (Interop.TryReceiveMessage(socket.SafeHandle, frame.AsSpan(have), out int received, out SafeMemfdHandle? descriptor))
            {
                descriptor?.Dispose();
                Assert.True(received > 0);
                have += received;
            }
        }
    }

    /// <summary>
    /// A raw client attacks the listener's handshake: <paramref name="attack"/> sends its hello (encoded for its own
    /// region) and descriptors of a memfd of the test's. The handshake fails as <paramref name="assertFailure"/> expects,
    /// every descriptor the listener received is closed, the listener accepts the next honest client, and what the
    /// attempt cost comes back.
    /// </summary>
    private static async Task HandshakeWithExtraDescriptorsAsync(
        Func<Socket, byte[], SharedRegion, SafeMemfdHandle, Task> attack, Action<Exception> assertFailure)
    {
        FaultResources baseline = await SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        string extraName = $"extra-{Guid.NewGuid():N}";
        PageRangeOptions options = NewOptions();
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        using (SafeMemfdHandle extra = Interop.MemfdCreate(extraName))
        using (InboundChannel own = PageRangeConnection.CreateInbound($"{name}-raw", options))
        {
            var failures = new ListenerFailures(listener);
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            using (Socket raw = await ConnectRawAsync(name))
            {
                await attack(raw, ControlFrameCodec.Encode(ControlHandshake.CreateHello(options, own.Region)), own.Region, extra);

                assertFailure(await failures.NextAsync());
                // The test's own is the only descriptor naming the memfd: every one the listener received was closed.
                Assert.Equal(1, FaultResources.Naming(extraName).Descriptors);
            }

            await NextClientIsAcceptedAsync(name, options, accepting);
        }
        AssertBackTo(baseline, name);
    }

    internal static async Task<Socket> ConnectRawAsync(string name)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(ControlHandshake.GetEndPoint(name)).WaitAsync(TestTimeouts.Long);
        return socket;
    }

    /// <summary>
    /// Checks that what the test's peers cost came back: no region of <paramref name="name"/> left, region memfds and
    /// mappings as at <paramref name="baseline"/>, and no socket more than then. Sockets rather than every descriptor:
    /// the runtime opens descriptors of its own now and then (an event-poll instance, a timer), which are not ours.
    /// </summary>
    internal static void AssertBackTo(FaultResources baseline, string name, int socketsBefore = -1)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        FaultResources after = FaultResources.Now();
        Assert.Equal((0, 0), FaultResources.Naming($"pagerange:{name}"));
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
        Assert.Equal(s_socketsAtBaseline.TryGetValue(baseline, out int sockets) ? sockets : socketsBefore, Sockets());
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<FaultResources, int> s_socketsAtBaseline = new();

    /// <summary><see cref="FaultResources.SettledAsync"/>, remembering how many sockets this process had then.</summary>
    private static async Task<FaultResources> SettledAsync()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        s_socketsAtBaseline[baseline] = Sockets();
        return baseline;
    }

    /// <summary>This process's socket descriptors.</summary>
    internal static int Sockets() =>
        Directory.EnumerateFileSystemEntries("/proc/self/fd")
            .Count(fd => new FileInfo(fd).LinkTarget?.StartsWith("socket:", StringComparison.Ordinal) == true);

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
