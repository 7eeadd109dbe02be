using System.Buffers.Binary;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// Nested calls through the server, binder's transaction stack: a worker waiting in a call back into its client runs
/// that client's calls of the same chain itself, so A -> B -> A -> B works with one thread on each side; a chain too deep
/// fails with ResourceExhausted; a call of no chain goes to the pool.
/// </summary>
public sealed class ServerNestedCallTests
{
    private const uint Ping = 1;
    private const uint Back = 2;
    private const uint Plain = 3;

    private static PageRangeServerOptions Options(int maxThreads, int maxCallDepth = PageRangeOptions.DefaultMaxCallDepth) => new()
    {
        MinThreads = 1,
        MaxThreads = maxThreads,
        StartShrinkerMonitor = false,
        ConnectionOptions = new PageRangeOptions { RegionSize = 1L << 20, MaxCallDepth = maxCallDepth },
    };

    /// <summary>The server's side of the ping-pong: n below the target calls the client back with n + 1.</summary>
    private static void ServerPing(Transaction tx, CallContext ctx)
    {
        int n = BinaryPrimitives.ReadInt32LittleEndian(tx.Payload);
        if (n >= 8)
        {
            tx.Reply(Encode(n));
            return;
        }
        using Transaction reply = ctx.Call(Back, Encode(n + 1));
        tx.Reply(reply.Payload);
    }

    /// <summary>The client's side: runs on the thread waiting in its own call, and calls the server again in the chain.</summary>
    private static void ClientBack(PageRangeConnection client, Transaction tx, List<int> threads)
    {
        using (tx)
        {
            threads.Add(Environment.CurrentManagedThreadId);
            int n = BinaryPrimitives.ReadInt32LittleEndian(tx.Payload);
            try
            {
                using Transaction reply = client.Call(Ping, Encode(n + 1), tx.NestedChain, TestTimeouts.Long);
                tx.Reply(reply.Payload);
            }
            catch (RemoteCallException error)
            {
                tx.ReplyError(error.Status, error.Message);
            }
            catch (PageRangeStatusException error)
            {
                tx.ReplyError(error.Status, error.Message);
            }
        }
    }

    [Fact]
    public async Task Chain_ABABDepthEight_OneThreadEachSide_Completes()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(maxThreads: 1), builder => builder.Map(Ping, ServerPing));
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long);
        var threads = new List<int>();
        client.SetNestedCallHandler(tx => ClientBack(client, tx, threads));

        int reply = await Task.Factory.StartNew(() =>
        {
            int caller = Environment.CurrentManagedThreadId;
            using Transaction answer = client.Call(Ping, Encode(0), TestTimeouts.Long);
            Assert.All(threads, thread => Assert.Equal(caller, thread));
            return BinaryPrimitives.ReadInt32LittleEndian(answer.Payload);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);

        Assert.Equal(8, reply);
        // Client calls 0, 2, 4, 6 reach the server; the server calls back 1, 3, 5, 7: four nested calls ran on the caller.
        Assert.Equal(4, threads.Count);
        Assert.Equal(1, server.PeakThreadCount);
    }

    [Fact]
    public async Task Chain_DeeperThanMaxCallDepth_FailsWithResourceExhausted()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(maxThreads: 1, maxCallDepth: 3), builder => builder.Map(Ping, ServerPing));
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long);
        var threads = new List<int>();
        client.SetNestedCallHandler(tx => ClientBack(client, tx, threads));

        RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(() => Task.Factory.StartNew(() =>
        {
            using Transaction answer = client.Call(Ping, Encode(0), TestTimeouts.Long);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TestTimeouts.Long));

        Assert.Equal(CallStatus.ResourceExhausted, error.Status);
        Assert.Contains("depth", error.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task PlainCall_WhileAWorkerWaitsInAChain_GoesToAnotherWorker()
    {
        string name = ControlHandshakeTests.UniqueName();
        using var callbackArrived = new ManualResetEventSlim(false);
        using var releaseCallback = new ManualResetEventSlim(false);
        int waitingThread = 0;
        int plainThread = 0;
        await using var server = PageRangeServer.Start(name, Options(maxThreads: 2), builder => builder
            .Map(Ping, (tx, ctx) =>
            {
                waitingThread = Environment.CurrentManagedThreadId;
                using Transaction reply = ctx.Call(Back, Encode(1));
                tx.Reply(reply.Payload);
            })
            .Map(Plain, (tx, _) =>
            {
                plainThread = Environment.CurrentManagedThreadId;
                tx.Reply([42]);
            }));
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long);
        client.SetNestedCallHandler(tx =>
        {
            using (tx)
            {
                callbackArrived.Set();
                releaseCallback.Wait(TestTimeouts.Long);
                tx.Reply(tx.Payload);
            }
        });
        Task<int> chain = Task.Factory.StartNew(() =>
        {
            using Transaction answer = client.Call(Ping, Encode(0), TestTimeouts.Long);
            return BinaryPrimitives.ReadInt32LittleEndian(answer.Payload);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(callbackArrived.Wait(TestTimeouts.Long));

        // The server's first worker waits in chain C; a call of no chain must not wait for it.
        using (Transaction plain = await client.CallAsync(Plain, ReadOnlyMemory<byte>.Empty).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(42, plain.Payload[0]);
        }
        Assert.False(chain.IsCompleted);
        Assert.NotEqual(waitingThread, plainThread);
        releaseCallback.Set();
        Assert.Equal(1, await chain.WaitAsync(TestTimeouts.Long));
    }

    private static byte[] Encode(int n)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, n);
        return bytes;
    }
}
