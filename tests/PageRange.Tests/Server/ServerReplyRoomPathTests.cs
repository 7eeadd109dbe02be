using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// Every way a handler replies (<see cref="Transaction.Reply"/>, <see cref="Transaction.ReplyAsync"/>,
/// <see cref="Transaction.ReserveReply"/>) waits at most <see cref="PageRangeServerOptions.ReplyRoomTimeout"/> for room
/// in a client that stopped reading, and that client is closed as <see cref="ClientDisconnectReason.StoppedReading"/>.
/// </summary>
public sealed class ServerReplyRoomPathTests
{
    private const int ReplyBytes = 128 << 10;

    [Theory]
    [InlineData("sync")]
    [InlineData("async")]
    [InlineData("reserve")]
    public async Task ClientHoldsEveryReply_EachReplyPath_ClientClosedAsStoppedReading(string path)
    {
        string name = ControlHandshakeTests.UniqueName();
        var disconnected = new TaskCompletionSource<ClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new PageRangeServerOptions
        {
            MaxThreads = 2,
            StartShrinkerMonitor = false,
            ReplyRoomTimeout = TimeSpan.FromMilliseconds(100),
            // Long: only the reply limit can end the stalled replies quickly.
            ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20, RegionFullTimeout = TimeSpan.FromMinutes(1) },
        };
        byte[] reply = new byte[ReplyBytes];
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map(1, async (Transaction tx, CallContext _) =>
        {
            switch (path)
            {
                case "sync":
                    tx.Reply(reply);
                    break;
                case "async":
                    await tx.ReplyAsync(reply);
                    break;
                default:
                    using (ReservedBuffer buffer = tx.ReserveReply(ReplyBytes))
                    {
                        buffer.Span[..ReplyBytes].Fill(7);
                        buffer.CommitReply(ReplyBytes);
                    }
                    break;
            }
        }));
        server.ClientDisconnected += (_, e) => disconnected.TrySetResult(e);
        PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionSize = 1L << 20 })
            .AsTask().WaitAsync(TestTimeouts.Long);
        var calls = new List<Task<Transaction>>();
        try
        {
            // Eight replies of 128 KiB cannot all fit a 1 MiB region: the later ones find no room while the earlier are held.
            for (int i = 0; i < 16; i++)
            {
                calls.Add(client.CallAsync(1, new byte[8]).AsTask());
            }
            ClientDisconnectedEventArgs ended = await disconnected.Task.WaitAsync(TestTimeouts.Long);
            Assert.Equal(ClientDisconnectReason.StoppedReading, ended.Reason);
            PeerDiedException died = await Assert.ThrowsAsync<PeerDiedException>(
                () => client.CallAsync(1, new byte[8]).AsTask().WaitAsync(TestTimeouts.Long));
            Assert.Equal("the client stopped reading its replies", died.PeerReason);
            Assert.Equal(0, server.ClientCount);
        }
        finally
        {
            foreach (Task<Transaction> call in calls)
            {
                try
                {
                    (await call.WaitAsync(TestTimeouts.Long)).Dispose();
                }
                catch (PageRangeException)
                {
                    // Failed for lack of room, or by the close.
                }
            }
            await client.DisposeAsync();
        }
    }
}
