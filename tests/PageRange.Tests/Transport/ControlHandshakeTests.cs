using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>Both sides of the handshake in one process: real sockets, memfds and mappings; uid checks need a second process.</summary>
public sealed class ControlHandshakeTests
{
    private static readonly PageRangeOptions s_options = new() { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };

    [Fact]
    public async Task ConnectAndAccept_SameProcess_ExchangeCredentialsAndRegions()
    {
        await using var pair = await HandshakePair.StartAsync();

        Assert.Equal(Environment.ProcessId, pair.Connector.PeerCredentials.Pid);
        Assert.Equal(Interop.GetEffectiveUserId(), pair.Connector.PeerCredentials.Uid);
        Assert.Equal(Environment.ProcessId, pair.Acceptor.PeerCredentials.Pid);
        Assert.Equal(s_options.RegionSize, pair.Connector.PeerHello.RegionSize);
        Assert.Equal(s_options.FreeRingCapacity, pair.Acceptor.PeerHello.FreeRingCapacity);

        // Each side writes through its mapping of the peer's memfd; the owner sees it in its own region.
        "connector"u8.CopyTo(pair.Connector.PeerRegion.GetSpan(8192, 9));
        "acceptor"u8.CopyTo(pair.Acceptor.PeerRegion.GetSpan(4096, 8));
        Assert.Equal("connector"u8.ToArray(), pair.AcceptorRegion.GetSpan(8192, 9).ToArray());
        Assert.Equal("acceptor"u8.ToArray(), pair.ConnectorRegion.GetSpan(4096, 8).ToArray());
    }

    [Fact]
    public async Task Connect_NobodyListens_FailsAtOnceNamingTheName()
    {
        string name = UniqueName();
        using SharedRegion own = CreateRegion("test-own");
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<PageRangeException>(
            () => ControlHandshake.ConnectAsync(name, s_options, own, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed}");
        Assert.Contains($"Nobody listens on the PageRange name '{name}'", error.Message, StringComparison.Ordinal);
        Assert.IsType<SocketException>(error.InnerException);
    }

    [Fact]
    public async Task PublicConnect_NobodyListens_FailsAtOnce()
    {
        string name = UniqueName();

        var error = await Assert.ThrowsAsync<PageRangeException>(
            () => PageRangeConnection.ConnectAsync(name, s_options).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.Contains(name, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_WrongProtocolVersion_RefusedWithTheReasonOnlyOnTheListener()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        var failures = FailureRecorder.On(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task accept = AcceptOneAsync(listener, accepting.Token);
        using SharedRegion own = CreateRegion("test-own");
        HelloMessage hello = ControlHandshake.CreateHello(s_options, own) with { ProtocolVersion = 42 };

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => ControlHandshake.ConnectCoreAsync(name, s_options, hello, own.Handle, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.True(refused.RefusedByPeer);
        Assert.DoesNotContain("version", refused.Message, StringComparison.Ordinal);
        Assert.Contains("refused the connection; it keeps the reason to itself", refused.Message, StringComparison.Ordinal);
        var ours = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.False(ours.RefusedByPeer);
        Assert.Contains("protocol version 42", ours.Message, StringComparison.Ordinal);
        Assert.False(accept.IsCompleted, "a refused client must not end AcceptAsync");
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Accept_ListenerAnnouncesWrongVersion_ConnectorRefusesIt()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        using SharedRegion listenerRegion = CreateRegion("test-listener");
        using SharedRegion connectorRegion = CreateRegion("test-connector");
        Task<HandshakeResult> accept = Task.Run(async () =>
        {
            Socket socket = await listener.AcceptSocketAsync(CancellationToken.None);
            HelloMessage hello = ControlHandshake.CreateHello(s_options, listenerRegion) with { ProtocolVersion = ControlHandshake.ProtocolVersion + 1 };
            return await ControlHandshake.AcceptCoreAsync(socket, name, s_options, hello, listenerRegion.Handle, CancellationToken.None);
        });

        var ours = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => ControlHandshake.ConnectAsync(name, s_options, connectorRegion, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));
        var theirs = await Assert.ThrowsAsync<ConnectionRefusedException>(() => accept.WaitAsync(TestTimeouts.Long));

        Assert.False(ours.RefusedByPeer);
        Assert.Contains($"the listener speaks PageRange protocol version {ControlHandshake.ProtocolVersion + 1}, and the connecting process speaks version {ControlHandshake.ProtocolVersion}", ours.Message, StringComparison.Ordinal);
        Assert.True(theirs.RefusedByPeer);
        Assert.DoesNotContain("version", theirs.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("unsealed", "not sealed against resizing")]
    [InlineData("wrong-size", "bytes but 131072 were announced")]
    [InlineData("no-descriptor", "came without the memfd")]
    [InlineData("bad-size", "announced a region of 1000 bytes")]
    [InlineData("not-memfd", "fcntl(F_GET_SEALS) failed")]
    public async Task Connect_BadRegion_RefusedByTheListener(string kind, string reason)
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        var failures = FailureRecorder.On(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task accept = AcceptOneAsync(listener, accepting.Token);
        using SharedRegion own = CreateRegion("test-own");
        using SafeMemfdHandle unsealed = Interop.MemfdCreate("test-unsealed");
        Interop.Ftruncate(unsealed, s_options.RegionSize);
        using SafeMemfdHandle devNull = Interop.OpenReadWrite("/dev/null");
        HelloMessage hello = ControlHandshake.CreateHello(s_options, own);
        (HelloMessage announced, SafeMemfdHandle? offered) = kind switch
        {
            "unsealed" => (hello, unsealed),
            "wrong-size" => (hello with { RegionSize = 2 * s_options.RegionSize }, own.Handle),
            "bad-size" => (hello with { RegionSize = 1000 }, own.Handle),
            "not-memfd" => (hello, devNull),
            _ => (hello, (SafeMemfdHandle?)null),
        };

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => ControlHandshake.ConnectCoreAsync(name, s_options, announced, offered!, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.True(refused.RefusedByPeer);
        Assert.DoesNotContain(reason, refused.Message, StringComparison.Ordinal);
        var ours = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.Contains(reason, ours.Message, StringComparison.Ordinal);
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Accept_ClientSaysNothing_TimesOutAndKeepsAccepting()
    {
        string name = UniqueName();
        // Short enough to keep the test quick, long enough that the well-behaved client below finishes within it on a
        // loaded machine: the same timeout bounds its handshake on the listener's side.
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64, ConnectTimeout = TimeSpan.FromSeconds(2) };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = FailureRecorder.On(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task<HandshakeResult> accept = AcceptOneAsync(listener, accepting.Token);
        using var silent = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await silent.ConnectAsync(ControlHandshake.GetEndPoint(name));

        var timeout = Assert.IsType<TimeoutException>(await failures.NextAsync());
        Assert.Contains("did not finish the handshake", timeout.Message, StringComparison.Ordinal);

        // The listener still accepts a well-behaved client afterwards.
        using SharedRegion own = CreateRegion("test-own");
        await using HandshakeResult connected = await ControlHandshake.ConnectAsync(name, s_options, own, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);
        await using HandshakeResult accepted = await accept.WaitAsync(TestTimeouts.Long);
        Assert.Equal(Environment.ProcessId, accepted.PeerCredentials.Pid);
    }

    [Fact]
    public async Task Accept_ClientSendsGarbage_RefusesItWithTheReason()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        var failures = FailureRecorder.On(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task accept = AcceptOneAsync(listener, accepting.Token);
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(ControlHandshake.GetEndPoint(name));

        await client.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());

        var refused = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.IsType<ProtocolViolationException>(refused.InnerException);
        Assert.Contains("does not speak the PageRange protocol", refused.Message, StringComparison.Ordinal);
        // The refusal frame reached the client before the socket closed.
        byte[] reply = new byte[1024];
        int length = await client.ReceiveAsync(reply).WaitAsync(TestTimeouts.Long);
        Assert.True(length > ControlFrameCodec.HeaderLength);
        Assert.Equal((uint)(length - ControlFrameCodec.HeaderLength), BinaryPrimitives.ReadUInt32LittleEndian(reply));
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Watch_PeerDisposes_PeerDiedIsCancelledWithPeerDiedException()
    {
        await using var pair = await HandshakePair.StartAsync();
        pair.Acceptor.Control.StartWatching();

        await pair.Connector.DisposeAsync();

        await WaitCancelledAsync(pair.Acceptor.Control.PeerDied);
        var reason = Assert.IsType<PeerDiedException>(pair.Acceptor.Control.CloseReason);
        Assert.Contains($"pid {Environment.ProcessId}", reason.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Watch_CancelMessage_ReachesTheCallback()
    {
        await using var pair = await HandshakePair.StartAsync();
        var received = new TaskCompletionSource<ControlMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        pair.Acceptor.Control.StartWatching(message => received.TrySetResult(message));

        await pair.Connector.Control.SendCancelAsync(42);

        Assert.Equal(new CancelMessage(42), await received.Task.WaitAsync(TestTimeouts.Long));
        Assert.False(pair.Acceptor.Control.PeerDied.IsCancellationRequested);
    }

    [Fact]
    public async Task Watch_HandshakeMessageAfterHandshake_IsAViolationThatClosesTheConnection()
    {
        await using var pair = await HandshakePair.StartAsync();
        pair.Acceptor.Control.StartWatching();
        pair.Connector.Control.StartWatching();

        await pair.Connector.Control.SendAsync(new ReadyMessage(), descriptor: null, CancellationToken.None);

        await WaitCancelledAsync(pair.Acceptor.Control.PeerDied);
        Assert.IsType<ProtocolViolationException>(pair.Acceptor.Control.CloseReason);
        // The violating side sees the connection end too.
        await WaitCancelledAsync(pair.Connector.Control.PeerDied);
        Assert.IsType<PeerDiedException>(pair.Connector.Control.CloseReason);
    }

    [Fact]
    public async Task Watch_LocalDispose_CancelsPeerDiedWithObjectDisposed()
    {
        await using var pair = await HandshakePair.StartAsync();
        pair.Acceptor.Control.StartWatching();
        CancellationToken died = pair.Acceptor.Control.PeerDied;

        await pair.Acceptor.DisposeAsync();

        Assert.True(died.IsCancellationRequested);
        Assert.IsType<ObjectDisposedException>(pair.Acceptor.Control.CloseReason);
    }

    [Fact]
    public async Task PublicApi_ConnectAndAccept_ExposeCredentialsAndDeath()
    {
        string name = UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        ValueTask<PageRangeConnection> accepting = listener.AcceptAsync();

        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, s_options).AsTask().WaitAsync(TestTimeouts.Long);
        PageRangeConnection server = await accepting.AsTask().WaitAsync(TestTimeouts.Long);

        Assert.Equal(Environment.ProcessId, client.PeerPid);
        Assert.Equal(Interop.GetEffectiveUserId(), server.PeerUid);
        Assert.Equal(name, server.Name);
        await server.DisposeAsync();
        await WaitCancelledAsync(client.PeerDied);
        Assert.True(server.PeerDied.IsCancellationRequested, "PeerDied still answers after disposal");
    }

    [Fact]
    public async Task Listen_NameTaken_ThrowsClearError_AndDisposeFreesIt()
    {
        string name = UniqueName();
        PageRangeListener first = PageRangeListener.Listen(name, s_options);
        Assert.Contains($"@pagerange/{name}", AbstractSocketNames());

        var taken = Assert.Throws<PageRangeException>(() => PageRangeListener.Listen(name, s_options));
        Assert.Contains($"'{name}' is taken", taken.Message, StringComparison.Ordinal);

        await first.DisposeAsync();
        Assert.DoesNotContain($"@pagerange/{name}", AbstractSocketNames());
        await using PageRangeListener second = PageRangeListener.Listen(name, s_options);
    }

    [Fact]
    public async Task AcceptAsync_ListenerDisposed_ThrowsObjectDisposed()
    {
        PageRangeListener listener = PageRangeListener.Listen(UniqueName(), s_options);
        ValueTask<PageRangeConnection> accepting = listener.AcceptAsync();

        await listener.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => accepting.AsTask().WaitAsync(TestTimeouts.Long));
    }

    [Theory]
    [InlineData("")]
    [InlineData("nul\0inside")]
    public void Listen_InvalidName_ThrowsArgumentException(string name)
    {
        Assert.ThrowsAny<ArgumentException>(() => PageRangeListener.Listen(name));
    }

    [Fact]
    public void Listen_NameOf98Bytes_ThrowsArgumentException()
    {
        Assert.Throws<ArgumentException>(() => PageRangeListener.Listen(new string('n', 98)));
        ControlHandshake.ValidateName(new string('n', 97));
    }

    internal static string UniqueName() => $"test-{Guid.NewGuid():N}";

    /// <summary>
    /// A receive region with the header <paramref name="options"/> (default: 64 KiB, rings of 64) describe, as a real
    /// receiver writes it: the handshake checks the header of every region it is offered.
    /// </summary>
    internal static SharedRegion CreateRegion(string name, PageRangeOptions? options = null)
    {
        options ??= s_options;
        RegionLayout layout = RegionLayout.Compute(options.RegionSize, options.TransactionRingCapacity, options.FreeRingCapacity);
        SharedRegion region = SharedRegion.Create(name, layout.RegionSize);
        RegionHeaderLayout header = layout.ToHeader();
        // SAFETY: RegionHeaderLayout is an unmanaged struct of exactly RegionHeaderLayout.Size bytes, and the span is
        // that long (GetSpan checks it lies inside the mapping).
        MemoryMarshal.Write(region.GetSpan(0, RegionHeaderLayout.Size), in header);
        return region;
    }

    internal static HashSet<string> AbstractSocketNames() =>
        File.ReadLines("/proc/net/unix").Skip(1)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(fields => fields.Length >= 8)
            .Select(fields => fields[7])
            .ToHashSet(StringComparer.Ordinal);

    internal static async Task WaitCancelledAsync(CancellationToken token)
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using CancellationTokenRegistration registration = token.Register(() => cancelled.TrySetResult());
        await cancelled.Task.WaitAsync(TestTimeouts.Long, CancellationToken.None);
    }

    private static async Task<HandshakeResult> AcceptOneAsync(PageRangeListener listener, CancellationToken cancellationToken)
    {
        (HandshakeResult handshake, SharedRegion own) = await listener.AcceptHandshakeAsync(
            () => CreateRegion("test-accepted"), static region => region, cancellationToken);
        own.Dispose();
        return handshake;
    }

    /// <summary>Collects the listener's failed handshakes in order.</summary>
    private sealed class FailureRecorder
    {
        private readonly System.Threading.Channels.Channel<Exception> _failures = System.Threading.Channels.Channel.CreateUnbounded<Exception>();

        public static FailureRecorder On(PageRangeListener listener)
        {
            var recorder = new FailureRecorder();
            listener.HandshakeFailed += (_, e) => recorder._failures.Writer.TryWrite(e.Exception);
            return recorder;
        }

        public async Task<Exception> NextAsync() => await _failures.Reader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long);
    }

    /// <summary>A connected pair in this process; regions are 64 KiB.</summary>
    internal sealed class HandshakePair : IAsyncDisposable
    {
        private HandshakePair(PageRangeListener listener, HandshakeResult connector, HandshakeResult acceptor, SharedRegion connectorRegion, SharedRegion acceptorRegion)
        {
            Listener = listener;
            Connector = connector;
            Acceptor = acceptor;
            ConnectorRegion = connectorRegion;
            AcceptorRegion = acceptorRegion;
        }

        public PageRangeListener Listener { get; }

        public HandshakeResult Connector { get; }

        public HandshakeResult Acceptor { get; }

        public SharedRegion ConnectorRegion { get; }

        public SharedRegion AcceptorRegion { get; }

        public static async Task<HandshakePair> StartAsync(PageRangeListener? listener = null)
        {
            listener ??= PageRangeListener.Listen(UniqueName(), s_options);
            ValueTask<(HandshakeResult, SharedRegion)> accepting = listener.AcceptHandshakeAsync(
                () => CreateRegion("test-acceptor"), static region => region, CancellationToken.None);
            SharedRegion connectorRegion = CreateRegion("test-connector");
            HandshakeResult connector = await ControlHandshake.ConnectAsync(listener.Name, s_options, connectorRegion, CancellationToken.None)
                .AsTask().WaitAsync(TestTimeouts.Long);
            (HandshakeResult acceptor, SharedRegion acceptorRegion) = await accepting.AsTask().WaitAsync(TestTimeouts.Long);
            return new HandshakePair(listener, connector, acceptor, connectorRegion, acceptorRegion);
        }

        public async ValueTask DisposeAsync()
        {
            await Connector.DisposeAsync();
            await Acceptor.DisposeAsync();
            ConnectorRegion.Dispose();
            AcceptorRegion.Dispose();
            await Listener.DisposeAsync();
        }
    }
}
