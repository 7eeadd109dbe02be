using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// The server's struct handlers (<c>MapStruct</c>, <c>MapOnewayStruct</c>): requests in and responses out as struct
/// bytes, sync and async; a client that sends the wrong size gets <see cref="CallStatus.InvalidArgument"/> and the
/// server keeps serving it and everyone else.
/// </summary>
public sealed class ServerStructTests
{
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    internal struct Order
    {
        public long Id;
        public int Quantity;
        public double Price;
    }

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    internal struct Receipt
    {
        public long OrderId;
        public double Total;
    }

    private static PageRangeServerOptions Options() => ServerTestOptions.InProcess(maxThreads: 4);

    [Fact]
    public async Task MapStruct_SyncAndAsyncHandlers_AnswerCallStructAndCallStructAsync()
    {
        string name = ControlHandshakeTests.UniqueName();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .MapStruct<Order, Receipt>(1, (order, ctx) =>
            {
                Assert.Equal(1u, ctx.Code);
                return new Receipt { OrderId = order.Id, Total = order.Quantity * order.Price };
            })
            .MapStruct<Order, Receipt>(2, async (order, _) =>
            {
                await Task.Yield();
                return new Receipt { OrderId = -order.Id, Total = order.Price };
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        for (long id = 1; id <= 20; id++)
        {
            var order = new Order { Id = id, Quantity = (int)id, Price = 2.5 };
            Receipt sync = client.CallStruct<Order, Receipt>(1, order, TestTimeouts.Long);
            Receipt viaAsync = await client.CallStructAsync<Order, Receipt>(2, order, TestTimeouts.Long);
            Assert.Equal(new Receipt { OrderId = id, Total = id * 2.5 }, sync);
            Assert.Equal(new Receipt { OrderId = -id, Total = 2.5 }, viaAsync);
        }
    }

    [Fact]
    public async Task MapOnewayStruct_ManyMessages_HandledInOrder()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new ConcurrentQueue<long>();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .MapOnewayStruct<Order>(10, (order, ctx) =>
            {
                Assert.True(ctx.IsOneway);
                seen.Enqueue(order.Id);
            }));
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        const int Count = 2000;
        for (int i = 0; i < Count; i++)
        {
            client.SendOnewayStruct(10, new Order { Id = i, Quantity = 1, Price = 1 });
        }
        await PageRangeServerTests.WaitUntilAsync(() => seen.Count == Count);
        Assert.Equal(Enumerable.Range(0, Count).Select(i => (long)i), seen);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 4)]
    public async Task MapStruct_NestedCallsBothWays_ChainOfEightCompletes(bool asyncServer, int maxThreads)
    {
        string name = ControlHandshakeTests.UniqueName();
        PageRangeServerOptions options = ServerTestOptions.InProcess(maxThreads);
        options.MinThreads = 1;
        await using var server = PageRangeServer.Start(name, options, builder =>
        {
            // The server's side: n below 8 calls the client back with n + 1, in the incoming call's chain.
            if (asyncServer)
            {
                builder.MapStruct<long, long>(1, async (n, ctx) => n >= 8 ? n : await ctx.CallStructAsync<long, long>(2, n + 1, TestTimeouts.Long));
            }
            else
            {
                builder.MapStruct<long, long>(1, (n, ctx) => n >= 8 ? n : ctx.CallStruct<long, long>(2, n + 1, TestTimeouts.Long));
            }
        });
        await using PageRangeConnection client = await ServerTestOptions.ConnectAsync(name);
        var threads = new ConcurrentQueue<int>();
        // The client's side: runs on the thread waiting in its own call, and calls the server again in the chain.
        client.SetNestedCallHandler(tx =>
        {
            using (tx)
            {
                threads.Enqueue(Environment.CurrentManagedThreadId);
                long n = tx.ReadStruct<long>();
                tx.ReplyStruct(client.CallStruct<long, long>(1, n + 1, tx.NestedChain, TestTimeouts.Long));
            }
        });

        (long result, int caller) = await Task.Factory.StartNew(
            () => (client.CallStruct<long, long>(1, 0L, TestTimeouts.Long), Environment.CurrentManagedThreadId),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);

        Assert.Equal(8, result);
        // 0 -> server -> 1 -> client -> 2 -> ... -> 8: the client ran 1, 3, 5 and 7, each on the thread of its first call.
        Assert.Equal(4, threads.Count);
        Assert.All(threads, thread => Assert.Equal(caller, thread));
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task MapStruct_ClientSendsTheWrongSize_InvalidArgumentAndTheServerKeepsServing()
    {
        string name = ControlHandshakeTests.UniqueName();
        var seen = new ConcurrentQueue<long>();
        var failures = new ConcurrentQueue<CallFailedEventArgs>();
        await using var server = PageRangeServer.Start(name, Options(), builder => builder
            .MapStruct<Order, Receipt>(1, (order, _) => new Receipt { OrderId = order.Id })
            .MapOnewayStruct<Order>(10, (order, _) => seen.Enqueue(order.Id)));
        server.CallFailed += (_, e) => failures.Enqueue(e);
        await using PageRangeConnection hostile = await ServerTestOptions.ConnectAsync(name);
        await using PageRangeConnection honest = await ServerTestOptions.ConnectAsync(name);
        int size = Marshal.SizeOf<Order>();
        foreach (int length in new[] { 0, size - 1, size + 1, 4096 })
        {
            // A raw client: bytes that are not an Order, as a call and as a oneway.
            RemoteCallException error = await Assert.ThrowsAsync<RemoteCallException>(
                () => hostile.CallAsync(1, new byte[length], TestTimeouts.Long).AsTask());
            Assert.Equal(CallStatus.InvalidArgument, error.Status);
            Assert.Equal($"The request is not a Order: it takes {size} bytes.", error.Message);
            hostile.SendOneway(10, new byte[length]);
        }
        // One client's oneways are handled in order, so once the good one after them is seen the bad ones were taken
        // and dropped before the handler: a status failure, not a handler's crash (no CallFailed event). The
        // connection they came on and the honest one both still work.
        hostile.SendOnewayStruct(10, new Order { Id = 5 });
        honest.SendOnewayStruct(10, new Order { Id = 6 });
        await PageRangeServerTests.WaitUntilAsync(() => seen.Count == 2);
        Assert.Equal([5L, 6L], seen.Order());
        Assert.Empty(failures);
        Assert.Equal(7, hostile.CallStruct<Order, Receipt>(1, new Order { Id = 7 }, TestTimeouts.Long).OrderId);
        Assert.Equal(8, honest.CallStruct<Order, Receipt>(1, new Order { Id = 8 }, TestTimeouts.Long).OrderId);
        Assert.Equal(2, server.ClientCount);
    }
}
