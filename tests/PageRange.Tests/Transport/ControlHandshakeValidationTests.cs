using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The handshake validates everything before a connection exists: the peer's announced region size against
/// <see cref="PageRangeOptions.MaxPeerRegionSize"/>, and the header and rings it wrote into its region. A bad one is a
/// refusal (a <see cref="PageRangeListener.HandshakeFailed"/> event on a listener), never an exception later.
/// </summary>
[Trait("Category", "Hostile")]
public sealed class ControlHandshakeValidationTests
{
    private static readonly PageRangeOptions s_options = new() { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };

    [Fact]
    public void MaxPeerRegionSize_DefaultsToMaxRegionSize_ValidatesAndIsCopied()
    {
        var options = new PageRangeOptions();
        Assert.Equal(PageRangeOptions.MaxRegionSize, options.MaxPeerRegionSize);

        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxPeerRegionSize = PageRangeOptions.MinRegionSize - 4096);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxPeerRegionSize = PageRangeOptions.MaxRegionSize + 4096);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxPeerRegionSize = PageRangeOptions.MinRegionSize + 1);
        Assert.Equal(PageRangeOptions.MaxRegionSize, options.MaxPeerRegionSize);

        options.MaxPeerRegionSize = 1L << 20;
        Assert.Equal(1L << 20, options.Clone().MaxPeerRegionSize);
    }

    [Fact]
    public void HardeningOptions_HaveDocumentedDefaults_ValidateAndAreCopied()
    {
        var options = new PageRangeOptions();
        Assert.Equal(TimeSpan.FromSeconds(5), options.HelloTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.ControlSendTimeout);
        Assert.Equal(PageRangeNamespace.Abstract, options.Namespace);

        Assert.Throws<ArgumentOutOfRangeException>(() => options.HelloTimeout = TimeSpan.Zero);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.ControlSendTimeout = TimeSpan.FromSeconds(-2));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.Namespace = (PageRangeNamespace)7);

        options.HelloTimeout = Timeout.InfiniteTimeSpan;
        options.ControlSendTimeout = TimeSpan.FromSeconds(1);
        options.Namespace = PageRangeNamespace.Private;
        PageRangeOptions copy = options.Clone();
        Assert.Equal(Timeout.InfiniteTimeSpan, copy.HelloTimeout);
        Assert.Equal(TimeSpan.FromSeconds(1), copy.ControlSendTimeout);
        Assert.Equal(PageRangeNamespace.Private, copy.Namespace);
        // An infinite hello timeout still leaves the handshake bounded by ConnectTimeout; the shorter of the two applies.
        Assert.Equal(options.ConnectTimeout, copy.EffectiveHelloTimeout);
        copy.HelloTimeout = TimeSpan.FromSeconds(2);
        Assert.Equal(TimeSpan.FromSeconds(2), copy.EffectiveHelloTimeout);
    }

    [Fact]
    public async Task Accept_PeerRegionAboveMaxPeerRegionSize_RefusedWithTheLimitNamedLocally()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions listenerOptions = Clone(s_options);
        listenerOptions.MaxPeerRegionSize = PageRangeOptions.MinRegionSize;
        PageRangeOptions clientOptions = Clone(s_options);
        clientOptions.RegionSize = 2 * PageRangeOptions.MinRegionSize;
        await using PageRangeListener listener = PageRangeListener.Listen(name, listenerOptions);
        var failures = new CrossProcess.ControlPlaneHostileTests.ListenerFailures(listener);
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();

        var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, clientOptions).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.True(refused.RefusedByPeer);
        Assert.DoesNotContain("MaxPeerRegionSize", refused.Message, StringComparison.Ordinal);
        var ours = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.Contains("the connecting process announced a region of 131072 bytes, more than the 65536 bytes the listener accepts (PageRangeOptions.MaxPeerRegionSize)",
            ours.Message, StringComparison.Ordinal);

        // A client within the limit still connects.
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, s_options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accept.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Connect_ListenerRegionAboveMaxPeerRegionSize_ConnectorRefusesIt()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions listenerOptions = Clone(s_options);
        listenerOptions.RegionSize = 2 * PageRangeOptions.MinRegionSize;
        PageRangeOptions clientOptions = Clone(s_options);
        clientOptions.MaxPeerRegionSize = PageRangeOptions.MinRegionSize;
        await using PageRangeListener listener = PageRangeListener.Listen(name, listenerOptions);
        var failures = new CrossProcess.ControlPlaneHostileTests.ListenerFailures(listener);
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();

        var ours = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => PageRangeConnection.ConnectAsync(name, clientOptions).AsTask().WaitAsync(TestTimeouts.Long));

        Assert.False(ours.RefusedByPeer);
        Assert.Contains("the listener announced a region of 131072 bytes, more than the 65536 bytes the connecting process accepts", ours.Message, StringComparison.Ordinal);
        var theirs = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
        Assert.True(theirs.RefusedByPeer);
        Assert.False(accept.IsCompleted);
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Theory]
    [InlineData("magic", "does not start with the PageRange magic")]
    [InlineData("version", "has layout version 9")]
    [InlineData("tx-capacity", "does not match what it announced")]
    [InlineData("data-size", "does not match what it announced")]
    [InlineData("unknown-flag", "does not match what it announced")]
    [InlineData("tx-tail", "is not fresh")]
    [InlineData("free-head", "is not fresh")]
    [InlineData("no-header", "does not start with the PageRange magic")]
    public async Task Accept_PeerRegionWithBadHeader_IsAHandshakeFailureNotAnExceptionLater(string kind, string reason)
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        var failures = new CrossProcess.ControlPlaneHostileTests.ListenerFailures(listener);
        Task<PageRangeConnection> accept = listener.AcceptAsync().AsTask();
        using (SharedRegion bad = kind == "no-header"
            ? SharedRegion.Create("test-bad", s_options.RegionSize)
            : ControlHandshakeTests.CreateRegion("test-bad"))
        {
            Span<byte> header = bad.GetSpan(0, RegionHeaderLayout.Size);
            // SAFETY: the span is exactly one RegionHeaderLayout, an unmanaged struct, inside the mapping.
            ref RegionHeaderLayout fields = ref MemoryMarshal.AsRef<RegionHeaderLayout>(header);
            switch (kind)
            {
                case "magic": fields.Magic ^= 1; break;
                case "version": fields.Version = 9; break;
                case "tx-capacity": fields.TxRingCapacity = 128; break;
                case "data-size": fields.DataSize += 4096; break;
                case "unknown-flag": fields.Flags |= 0x8000_0000; break;
                case "tx-tail": fields.TxTail = 5; break;
                case "free-head": fields.FreeHead = 1; break;
                default: break;
            }
            HelloMessage hello = ControlHandshake.CreateHello(s_options, bad);

            var refused = await Assert.ThrowsAsync<ConnectionRefusedException>(
                () => ControlHandshake.ConnectCoreAsync(name, s_options, hello, bad.Handle, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));

            Assert.True(refused.RefusedByPeer);
            var ours = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
            Assert.IsType<ProtocolViolationException>(ours.InnerException);
            Assert.Contains("the connecting process offered a bad region", ours.Message, StringComparison.Ordinal);
            Assert.Contains(reason, ours.Message, StringComparison.Ordinal);
        }
        Assert.False(accept.IsCompleted);

        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, s_options).AsTask().WaitAsync(TestTimeouts.Long);
        await using PageRangeConnection server = await accept.WaitAsync(TestTimeouts.Long);
        Assert.Equal(Environment.ProcessId, server.PeerPid);
    }

    [Fact]
    public async Task Connect_ListenerRegionWithBadHeader_ConnectorRefusesIt()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, s_options);
        using SharedRegion listenerRegion = ControlHandshakeTests.CreateRegion("test-listener");
        MemoryMarshal.AsRef<RegionHeaderLayout>(listenerRegion.GetSpan(0, RegionHeaderLayout.Size)).TxHead = 3;
        using SharedRegion connectorRegion = ControlHandshakeTests.CreateRegion("test-connector");
        Task<HandshakeResult> accepting = Task.Run(async () =>
        {
            var socket = await listener.AcceptSocketAsync(CancellationToken.None);
            return await ControlHandshake.AcceptAsync(socket, name, s_options, listenerRegion, CancellationToken.None);
        });

        var ours = await Assert.ThrowsAsync<ConnectionRefusedException>(
            () => ControlHandshake.ConnectAsync(name, s_options, connectorRegion, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long));
        var theirs = await Assert.ThrowsAsync<ConnectionRefusedException>(() => accepting.WaitAsync(TestTimeouts.Long));

        Assert.False(ours.RefusedByPeer);
        Assert.Contains("the listener offered a bad region: the peer's region is not fresh", ours.Message, StringComparison.Ordinal);
        Assert.True(theirs.RefusedByPeer);
    }

    private static PageRangeOptions Clone(PageRangeOptions options) => options.Clone();
}
