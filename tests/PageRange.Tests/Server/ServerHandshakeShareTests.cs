using System.Collections.Concurrent;
using System.Net.Sockets;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Server;

/// <summary>
/// A server's listener refuses a client beyond its uid's or its process's share of the handshakes in progress
/// (<see cref="PageRangeOptions.MaxHandshakesPerUid"/>, <see cref="PageRangeOptions.MaxHandshakesPerProcess"/>): the
/// server's <see cref="PageRangeServer.ClientRefused"/> sees it as it sees a refusal by its own limits.
/// </summary>
public sealed class ServerHandshakeShareTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(nameof(PageRangeOptions.MaxHandshakesPerProcess))]
    [InlineData(nameof(PageRangeOptions.MaxHandshakesPerUid))]
    public async Task ClientRefused_BeyondItsHandshakeShare_RaisedNamingTheOption_AndTheClientIsToldOnlyThatItWasRefused(string option)
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = ServerTestOptions.InProcess(maxThreads: 2);
        // The silent socket below holds its handshake, and so the share, for the whole test.
        options.ConnectionOptions.HelloTimeout = TestTimeouts.Long;
        if (option == nameof(PageRangeOptions.MaxHandshakesPerProcess))
        {
            options.ConnectionOptions.MaxHandshakesPerProcess = 1;
        }
        else
        {
            options.ConnectionOptions.MaxHandshakesPerUid = 1;
        }
        var refused = new ConcurrentQueue<ClientRefusedEventArgs>();
        var failed = new ConcurrentQueue<HandshakeFailedEventArgs>();
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, (tx, _) => tx.Reply([1])));
        server.ClientRefused += (_, e) => refused.Enqueue(e);
        server.HandshakeFailed += (_, e) => failed.Enqueue(e);
        uint uid = Interop.GetEffectiveUserId();

        using (Socket silent = await ControlPlaneHostileTests.ConnectRawAsync(name))
        {
            await WaitUntilAsync(() => server.ListenerForTest.HandshakesInProgressForTest(uid, Environment.ProcessId) == (1, 1), "the silent socket holds the share");
            ConnectionRefusedException theirs = await Assert.ThrowsAsync<ConnectionRefusedException>(() => ServerTestOptions.ConnectAsync(name));

            // Raised before the refusal was sent, so before the client saw it.
            ClientRefusedEventArgs refusal = Assert.Single(refused);
            output.WriteLine($"server: {refusal}\nclient: {theirs.Message}");
            Assert.Contains($"PageRangeOptions.{option} is 1", refusal.Reason, StringComparison.Ordinal);
            Assert.Equal(Environment.ProcessId, refusal.Pid);
            Assert.Equal(uid, refusal.Uid);
            Assert.True(theirs.RefusedByPeer);
            Assert.DoesNotContain(option, theirs.Message, StringComparison.Ordinal);
            // The refusal shows in HandshakeFailed too, as a refusal by the server's own limits before the handshake does.
            await WaitUntilAsync(() => !failed.IsEmpty, "the refusal reached HandshakeFailed");
            var failure = Assert.IsType<ConnectionRefusedException>(Assert.Single(failed).Exception);
            Assert.Contains(option, failure.Message, StringComparison.Ordinal);
            Assert.Equal(0, server.ClientCount);
        }

        // The silent socket's end gives its share back: the next client is admitted and served, and nothing more was refused.
        await WaitUntilAsync(() => server.ListenerForTest.HandshakesInProgressForTest(uid, Environment.ProcessId) == (0, 0), "the share given back");
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        using Transaction ok = await client.CallAsync(1, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(1, ok.Payload[0]);
        Assert.Single(refused);
    }
}
