using System.Diagnostics;
using System.Net.Sockets;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// The listener's handshakes cannot all be held by one peer: a peer that stalls after its hello is dropped on a finite
/// deadline whatever <see cref="PageRangeOptions.ConnectTimeout"/> says, and one process or one uid holding stalled
/// sockets gets only its share of the slots, so another process still connects at once.
/// </summary>
/// <remarks>In the non-parallel collection: the tests start TestHost processes, which must not inherit another test's descriptors.</remarks>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class HandshakeShareTests(ITestOutputHelper output)
{
    private const uint Nobody = 65534;

    // Far beyond each test's own bounds: only a share or the rest-of-handshake deadline can end a stalled handshake in time.
    private static PageRangeOptions StallingOptions() => new()
    {
        RegionSize = PageRangeOptions.MinRegionSize,
        TransactionRingCapacity = 64,
        FreeRingCapacity = 64,
        HelloTimeout = TimeSpan.FromMinutes(5),
        ConnectTimeout = Timeout.InfiniteTimeSpan,
    };

    [Fact]
    public async Task Accept_ValidHelloThenNoReady_DroppedWithinTheHelloTimeoutEvenWithInfiniteConnectTimeout()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = StallingOptions();
        options.HelloTimeout = TimeSpan.FromSeconds(1);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = new ControlPlaneHostileTests.ListenerFailures(listener);
        using var accepting = new CancellationTokenSource();
        Task<PageRangeConnection> accept = listener.AcceptAsync(accepting.Token).AsTask();

        using (var own = PageRangeConnection.CreateInbound($"{name}-client", options))
        using (Socket raw = await ControlPlaneHostileTests.ConnectRawAsync(name))
        {
            byte[] hello = ControlFrameCodec.Encode(ControlHandshake.CreateHello(options, own.Region));
            Assert.True(Interop.TrySendMessage(raw.SafeHandle, hello, own.Region.Handle, out int sent));
            Assert.Equal(hello.Length, sent);
            // The listener answers with its hello and memfd (read, and so closed, here); then the peer says nothing.
            byte[] buffer = new byte[256];
            Assert.True(await raw.ReceiveAsync(buffer).WaitAsync(TestTimeouts.Long) > 0);
            var clock = Stopwatch.StartNew();

            var timeout = Assert.IsType<TimeoutException>(await failures.NextAsync());

            output.WriteLine($"{clock.Elapsed}: {timeout.Message}");
            Assert.Contains("did not answer the listener's hello within 00:00:01", timeout.Message, StringComparison.Ordinal);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"dropped after {clock.Elapsed}");
            // Dropped, not only reported: the peer sees its socket close.
            Assert.Equal(0, await raw.ReceiveAsync(buffer).WaitAsync(TestTimeouts.Long));
            Assert.Equal((0, 0), listener.HandshakesInProgressForTest(Interop.GetEffectiveUserId(), Environment.ProcessId));
        }
        Assert.False(accept.IsCompleted);
        await accepting.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => accept.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Accept_OneProcessStallsEverySlot_ItsShareIsHeldTheRestRefused_AnotherProcessConnectsAtOnce()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = StallingOptions();
        int share = options.MaxHandshakesPerProcess;
        Assert.True(share < options.MaxHandshakesPerUid);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = new ControlPlaneHostileTests.ListenerFailures(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task<(HandshakeResult, SharedRegion)> accept = AcceptAsync(listener, accepting.Token);

        await StallEverySlotAsync(name, failures, listener, expectedHeld: share, "MaxHandshakesPerProcess", async () =>
        {
            // Same uid, another pid: the uid's share has room, this process's is full.
            using TestHostProcess host = TestHostProcess.Start(output, "control-connect", name);
            await ConnectsAtOnceAsync(host, Interop.GetEffectiveUserId(), accept);
        });
    }

    [RootFact]
    public async Task Accept_OneUidStallsEverySlot_ItsShareIsHeldTheRestRefused_AnotherUidConnectsAtOnce()
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeOptions options = StallingOptions();
        options.MaxHandshakesPerProcess = PageRangeListener.MaxConcurrentHandshakes;
        options.MaxHandshakesPerUid = 8;
        options.AllowedUids.Add(Nobody);
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        var failures = new ControlPlaneHostileTests.ListenerFailures(listener);
        using var accepting = new CancellationTokenSource(TestTimeouts.Long);
        Task<(HandshakeResult, SharedRegion)> accept = AcceptAsync(listener, accepting.Token);

        await StallEverySlotAsync(name, failures, listener, expectedHeld: 8, "MaxHandshakesPerUid", async () =>
        {
            using TestHostProcess host = TestHostProcess.Start(
                output, "control-connect", name, "--uid", $"{Nobody}", "--allow-uid", $"{Interop.GetEffectiveUserId()}");
            await ConnectsAtOnceAsync(host, Nobody, accept);
        });
    }

    /// <summary>
    /// Opens as many silent sockets as the listener has slots, from this process: <paramref name="expectedHeld"/> of
    /// them hold a slot, each of the others is refused at once (its socket closed) naming <paramref name="option"/>;
    /// then runs <paramref name="honest"/> while they stall.
    /// </summary>
    private static async Task StallEverySlotAsync(
        string name, ControlPlaneHostileTests.ListenerFailures failures, PageRangeListener listener, int expectedHeld, string option, Func<Task> honest)
    {
        var stalled = new List<Socket>();
        try
        {
            for (int i = 0; i < PageRangeListener.MaxConcurrentHandshakes; i++)
            {
                stalled.Add(await ControlPlaneHostileTests.ConnectRawAsync(name));
            }
            for (int i = 0; i < PageRangeListener.MaxConcurrentHandshakes - expectedHeld; i++)
            {
                var refused = Assert.IsType<ConnectionRefusedException>(await failures.NextAsync());
                Assert.Contains(option, refused.Message, StringComparison.Ordinal);
            }
            Assert.Equal(expectedHeld, listener.HandshakesInProgressForTest(Interop.GetEffectiveUserId(), Environment.ProcessId).OfUid);
            // Each refused socket was closed at once: it reads the refusal, then its end; the held ones read nothing.
            int closed = 0;
            foreach (Socket socket in stalled)
            {
                if (socket.Poll(0, SelectMode.SelectRead))
                {
                    while (await socket.ReceiveAsync(new byte[256]).WaitAsync(TestTimeouts.Long) > 0)
                    {
                    }
                    closed++;
                }
            }
            Assert.Equal(PageRangeListener.MaxConcurrentHandshakes - expectedHeld, closed);

            await honest();
        }
        finally
        {
            foreach (Socket socket in stalled)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>The TestHost's handshake completes well within the stalled peers' deadlines, and the listener hands it over.</summary>
    private static async Task ConnectsAtOnceAsync(TestHostProcess host, uint uid, Task<(HandshakeResult, SharedRegion)> accept)
    {
        // The child's own ConnectTimeout is 10 s: stuck in the backlog behind the stalled sockets, it would give up.
        Assert.Equal($"{uid}", host.ReadUntil("uid: "));
        var clock = Stopwatch.StartNew();
        host.ReadUntil("connected: ", TestTimeouts.Short);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"the honest process took {clock.Elapsed}");
        (HandshakeResult handshake, SharedRegion own) = await accept.WaitAsync(TestTimeouts.Long);
        await using (handshake)
        using (own)
        {
            Assert.Equal(host.Id, handshake.PeerCredentials.Pid);
            Assert.Equal(uid, handshake.PeerCredentials.Uid);
        }
        host.WriteLine("quit");
        Assert.Equal(0, host.WaitForExit());
    }

    private static async Task<(HandshakeResult, SharedRegion)> AcceptAsync(PageRangeListener listener, CancellationToken cancellationToken) =>
        await listener.AcceptHandshakeAsync(
            () => ControlHandshakeTests.CreateRegion("test-accepted"), static region => region, cancellationToken);
}
