using System.Buffers;
using System.Runtime.InteropServices;
using MessagePack;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Typed messages over a real connection: nested types round-trip sync and async, in both directions; deserializing
/// reads the payload in place; a payload that is not the expected type fails that transaction only.
/// </summary>
public sealed class PageRangeMessagePackTests
{
    private const uint OrderCode = 11;
    private const uint GarbageCode = 12;

    [Theory]
    [InlineData(0, 0)]
    [InlineData(3, 100)]
    [InlineData(40, 20_000)]
    public async Task Call_NestedTypes_RoundTripSyncAndAsync(int lines, int attachment)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(EchoOrder);

        for (int id = 1; id <= 4; id++)
        {
            Order request = Order.Sample(id, lines, attachment);
            Order reply = id % 2 == 0
                ? pair.Client.Call<Order, Order>(request, OrderCode, timeout: TestTimeouts.Long)
                : await pair.Client.CallAsync<Order, Order>(request, OrderCode, timeout: TestTimeouts.Long);
            AssertSame(Order.Sample(id, lines, attachment).WithId(id + 1000), reply);
        }
        Assert.Equal(0, pair.Client.OutboundStats.ReservedBuffers);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task SendOneway_NestedTypes_ArriveInOrder()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        for (int id = 0; id < 20; id++)
        {
            pair.Client.SendOneway(Order.Sample(id, id, id * 10), OrderCode);
            using Transaction received = pair.Server.Receive();
            Assert.True(received.IsOneway);
            AssertSame(Order.Sample(id, id, id * 10), received.Deserialize<Order>());
        }
    }

    [Fact]
    public async Task SendOneway_MessageOutgrowsItsReservation_StillArrivesWhole()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // Each size is estimated from the one before: 2000 is copied (no estimate yet), 30 000 outgrows its 2 KiB
        // reservation, spills and is copied once, 2000 fits its 34 KiB reservation, and so on.
        foreach (int size in new[] { 2000, 30_000, 2000, 60_000, 100_000 })
        {
            var blob = new Blob(ReservedBufferTests.Pattern(size, size));
            pair.Client.SendOneway(blob, OrderCode);
            Assert.Equal(0, pair.Client.OutboundStats.ReservedBuffers);
            using Transaction received = pair.Server.Receive();
            Assert.True(received.Deserialize<Blob>().Data.AsSpan().SequenceEqual(blob.Data));
        }
    }

    [Fact]
    public async Task SendOneway_SerializerThrows_ReservationIsAbortedAndNothingIsSent()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // The first sets the estimate, so the second is serialized into a reservation when it fails.
        pair.Client.SendOneway(new Exploding(), OrderCode);
        using (Transaction first = pair.Server.Receive())
        {
            Assert.Equal(2001, first.Length);
        }
        // The first's free may still wait on the free ring (frees of small messages are read in batches), or be taken
        // by the failed send's reservation: either way no buffer beyond what was live before remains.
        int liveBefore = pair.Client.OutboundLiveBuffers;
        var error = Assert.Throws<MessagePackSerializationException>(() => pair.Client.SendOneway(new Exploding { Explode = true }, OrderCode));
        Assert.IsType<InvalidOperationException>(error.InnerException);
        Assert.InRange(pair.Client.OutboundLiveBuffers, 0, liveBefore);
        Assert.Equal(pair.Client.OutboundLiveBuffers, pair.Client.OutboundStats.BufferCount);
        Assert.False(pair.Server.TryReceive(out _));
        // A send larger than the lazy-drain limit takes every free first: only its own buffer is live then.
        pair.Client.SendOneway(OrderCode, new byte[OutboundChannel.LazyDrainMaxMessage + 1]);
        Assert.Equal(1, pair.Client.OutboundLiveBuffers);
        Assert.Equal(1, pair.Client.OutboundStats.BufferCount);
        using (Transaction large = pair.Server.Receive())
        {
            Assert.Equal(OutboundChannel.LazyDrainMaxMessage + 1, large.Length);
        }

        pair.Client.SendOneway(new Blob([1, 2, 3]), OrderCode);
        using Transaction received = pair.Server.Receive();
        Assert.Equal([1, 2, 3], received.Deserialize<Blob>().Data);
    }

    [Fact]
    public async Task Deserialize_ReadsInPlace_AllocatesThePayloadOnlyOnce()
    {
        const int Size = 1 << 20;
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(new PageRangeOptions { RegionSize = 8 << 20 });
        // Warm up: the formatter is generated and jitted on first use, which allocates.
        pair.Client.SendOneway(new Blob(new byte[16]), OrderCode);
        using (Transaction warm = pair.Server.Receive())
        {
            _ = warm.Deserialize<Blob>();
        }

        var blob = new Blob(ReservedBufferTests.Pattern(Size, 3));
        pair.Client.SendOneway(blob, OrderCode);
        using Transaction received = pair.Server.Receive();
        // The payload is the mapped region itself, not a copy.
        Assert.True(MemoryMarshal.TryGetMemoryManager(received.Memory, out MemoryManager<byte>? manager));
        Assert.Equal("RegionMemoryManager", manager!.GetType().Name);

        long before = GC.GetAllocatedBytesForCurrentThread();
        Blob result = received.Deserialize<Blob>();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(result.Data.AsSpan().SequenceEqual(blob.Data));
        // The byte[] itself is the only large allocation: copying the payload out first would double this.
        Assert.InRange(allocated, Size, Size + (16 << 10));
    }

    [Fact]
    public async Task Deserialize_PayloadsAcrossThePrefetchLimit_ReadIntactInPlaceWithoutAllocating()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        byte[] pattern = ReservedBufferTests.Pattern(PageRangeMessagePack.PrefetchLimit + 128, 7);
        // Warm up: the formatter is generated and jitted on first use, which allocates.
        for (int i = 0; i < 4; i++)
        {
            pair.Client.SendOneway(new Frame(i, pattern.AsMemory(0, 8)), OrderCode);
            using Transaction warm = pair.Server.Receive();
            _ = warm.Deserialize<Frame>();
        }

        // Every blob length from empty to past the limit: payloads of 3 bytes to PrefetchLimit + 131, from wherever
        // the allocator places them, so each line layout the prefetch walks (a first line entered mid-way, a last line
        // reached only by the final byte, one line, sixteen, none prefetched at all) is read back in place.
        long allocated = 0;
        for (int length = 0; length <= PageRangeMessagePack.PrefetchLimit + 128; length++)
        {
            pair.Client.SendOneway(new Frame(length, pattern.AsMemory(0, length)), OrderCode);
            using Transaction received = pair.Server.Receive();
            long before = GC.GetAllocatedBytesForCurrentThread();
            Frame frame = received.Deserialize<Frame>();
            allocated += GC.GetAllocatedBytesForCurrentThread() - before;

            Assert.Equal(length, frame.Seq);
            Assert.True(frame.Data.Span.SequenceEqual(pattern.AsSpan(0, length)), $"blob of {length} bytes");
            Assert.True(length == 0 || received.Payload.Overlaps(frame.Data.Span), $"blob of {length} bytes is not a slice of the payload");
        }
        Assert.Equal(0, allocated);
    }

    [Fact]
    public async Task DefaultOptions_WritesAndReadsWhatMessagePackSerializerDoes_OtherOptionsGoThroughIt()
    {
        // The default options' formatter is looked up once and used directly (PageRangeMessagePack.DefaultFormatter):
        // the bytes on the wire are MessagePackSerializer's, and what it writes reads back alike. Options of the user's
        // own (here with LZ4 compression, which only MessagePackSerializer applies) still go through it.
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        MessagePackSerializerOptions compressed = PageRangeMessagePack.DefaultOptions.WithCompression(MessagePackCompression.Lz4BlockArray);
        for (int id = 0; id < 3; id++)
        {
            Order order = Order.Sample(id, 30, 200);
            pair.Client.SendOneway(order, OrderCode);
            using (Transaction received = pair.Server.Receive())
            {
                Assert.Equal(MessagePackSerializer.Serialize(order, PageRangeMessagePack.DefaultOptions), received.Payload.ToArray());
                AssertSame(Order.Sample(id, 30, 200), received.Deserialize<Order>());
            }
            pair.Client.SendOneway(order, OrderCode, compressed);
            using (Transaction received = pair.Server.Receive())
            {
                Assert.Equal(MessagePackSerializer.Serialize(order, compressed), received.Payload.ToArray());
                Assert.NotEqual(MessagePackSerializer.Serialize(order, PageRangeMessagePack.DefaultOptions), received.Payload.ToArray());
                AssertSame(Order.Sample(id, 30, 200), received.Deserialize<Order>(compressed));
                Assert.Throws<InvalidMessageException>(() => received.Deserialize<Order>());
            }
        }
    }

    [Fact]
    public async Task DefaultOptions_TypeWithoutAFormatter_FailsAlikeEveryTimeAndTheConnectionKeepsWorking()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // A type the resolver has no formatter for fails as MessagePackSerializer fails with the same options (message
        // and inner exception's type), on every use, serializing and deserializing.
        var serializerError = Assert.Throws<MessagePackSerializationException>(
            () => MessagePackSerializer.Serialize(new NotAMessage(0), PageRangeMessagePack.DefaultOptions));
        var deserializerError = Assert.Throws<MessagePackSerializationException>(
            () => MessagePackSerializer.Deserialize<NotAMessage>(new byte[] { 0x91, 0x01 }, PageRangeMessagePack.DefaultOptions));
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var error = Assert.Throws<MessagePackSerializationException>(() => pair.Client.SendOneway(new NotAMessage(attempt), OrderCode));
            Assert.Equal(serializerError.Message, error.Message);
            Assert.Equal(serializerError.InnerException!.GetType(), error.InnerException!.GetType());
            pair.Client.SendOneway(GarbageCode, [0x91, 0x01]);
            using Transaction received = pair.Server.Receive();
            var invalid = Assert.Throws<InvalidMessageException>(() => received.Deserialize<NotAMessage>());
            var inner = Assert.IsType<MessagePackSerializationException>(invalid.InnerException);
            Assert.Equal(deserializerError.Message, inner.Message);
            Assert.Equal(deserializerError.InnerException!.GetType(), inner.InnerException!.GetType());
        }
        pair.Client.SendOneway(new Blob([4, 5]), OrderCode);
        using Transaction blob = pair.Server.Receive();
        Assert.Equal([4, 5], blob.Deserialize<Blob>().Data);
    }

    /// <summary>Not annotated for MessagePack: the standard resolver has no formatter for it.</summary>
    private sealed class NotAMessage(int value)
    {
        public int Value { get; } = value;
    }

    [Fact]
    public async Task Deserialize_MalformedPayload_ThrowsInvalidMessageAndTheConnectionKeepsWorking()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // 0xc1 is never used in MessagePack; the second payload is an Order cut short.
        byte[] truncated = MessagePackSerializer.Serialize(Order.Sample(1, 5, 50), PageRangeMessagePack.DefaultOptions)[..40];
        foreach (byte[] garbage in new[] { new byte[] { 0xc1 }, truncated, [] })
        {
            pair.Client.SendOneway(GarbageCode, garbage);
            using Transaction received = pair.Server.Receive();
            var error = Assert.Throws<InvalidMessageException>(() => received.Deserialize<Order>());
            Assert.Contains($"code {GarbageCode}", error.Message, StringComparison.Ordinal);
            Assert.Contains("is not a valid Order", error.Message, StringComparison.Ordinal);
            Assert.IsType<MessagePackSerializationException>(error.InnerException);
        }

        Task server = pair.Serve(EchoOrder);
        AssertSame(Order.Sample(1, 2, 2).WithId(1001), pair.Client.Call<Order, Order>(Order.Sample(1, 2, 2), OrderCode, timeout: TestTimeouts.Long));
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Call_MalformedReply_ThrowsInvalidMessageAndTheConnectionKeepsWorking()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call =>
        {
            if (call.Code == GarbageCode)
            {
                call.Reply([0x92, 0xc1]);
            }
            else
            {
                EchoOrder(call);
            }
        });

        Assert.Throws<InvalidMessageException>(() => pair.Client.Call<Order, Order>(Order.Sample(1, 1, 1), GarbageCode, timeout: TestTimeouts.Long));
        await Assert.ThrowsAsync<InvalidMessageException>(
            async () => await pair.Client.CallAsync<Order, Order>(Order.Sample(1, 1, 1), GarbageCode, timeout: TestTimeouts.Long));
        AssertSame(Order.Sample(2, 1, 1).WithId(1002), await pair.Client.CallAsync<Order, Order>(Order.Sample(2, 1, 1), OrderCode, timeout: TestTimeouts.Long));
        Assert.Equal(0, pair.Client.OutboundStats.ReservedBuffers);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Reply_MessageOutgrowsItsReservation_StillArrivesWhole()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call => call.Reply(new Blob(ReservedBufferTests.Pattern(call.Deserialize<int>(), 7))));
        // As for oneway: copied, spilled, reserved, spilled.
        foreach (int size in new[] { 2000, 50_000, 2000, 90_000 })
        {
            Blob reply = pair.Client.Call<int, Blob>(size, timeout: TestTimeouts.Long);
            Assert.True(reply.Data.AsSpan().SequenceEqual(ReservedBufferTests.Pattern(size, 7)));
        }
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(100)]
    [InlineData(200)]
    public async Task Call_SmallMessage_RequestAndReplyGoThroughTheDirectLinesUpToTheirTwoPayloadLines(int dataBytes)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call => call.Reply(new Blob([.. call.Deserialize<Blob>().Data.Reverse()])));
        byte[] data = [.. Enumerable.Range(0, dataBytes).Select(i => (byte)(i * 7))];
        int wire = MessagePackSerializer.Serialize(new Blob(data), PageRangeMessagePack.DefaultOptions).Length;
        const int Calls = 5;
        for (int i = 0; i < Calls; i++)
        {
            Blob reply = pair.Client.Call<Blob, Blob>(new Blob(data), timeout: TestTimeouts.Long);
            Assert.Equal(data.Reverse(), reply.Data);
        }
        // A 64-byte message is 67 bytes on the wire, more than one line: the second payload line (protocol version 9)
        // takes it and a 100-byte one; a larger one goes on the ring.
        long direct = wire <= DirectCallLayout.MaxPayload ? Calls : 0;
        Assert.Equal(dataBytes <= 100, direct == Calls);
        Assert.Equal(direct, pair.Client.Outbound.DirectCallsSent);
        Assert.Equal(direct, pair.Server.Inbound.DirectCallsReceived);
        Assert.Equal(direct, pair.Server.Outbound.DirectRepliesSent);
        Assert.Equal(direct, pair.Client.Inbound.DirectRepliesReceived);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    /// <summary>The region-full timeout of the tests after a large message: long, so that waiting for it fails visibly.</summary>
    private static readonly TimeSpan s_longRegionFull = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SendOneway_SmallAfterLarge_PeerRegionPartlyHeld_GoesAtOnce()
    {
        // 8 MiB: a oneway quota of about 4 MiB, of which the held 3 MiB message leaves less than its estimate (3.4 MiB).
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(new PageRangeOptions { RegionSize = 8 << 20, RegionFullTimeout = s_longRegionFull });
        pair.Client.SendOneway(new OnewaySizedBlob(new byte[3 << 20]), OrderCode);
        Transaction held = pair.Server.Receive();

        await Task.Run(() =>
        {
            for (int i = 0; i < 3; i++)
            {
                pair.Client.SendOneway(new OnewaySizedBlob([1, 2, (byte)i]), OrderCode);
            }
        }).WaitAsync(TestTimeouts.Short);
        // Oneways are delivered one at a time (binder's order): the small ones come once the large one is freed.
        held.Dispose();
        using var bound = new CancellationTokenSource(TestTimeouts.Short);
        for (int i = 0; i < 3; i++)
        {
            using Transaction small = pair.Server.Receive(bound.Token);
            Assert.Equal([1, 2, (byte)i], small.Deserialize<OnewaySizedBlob>().Data);
        }
    }

    [Fact]
    public async Task Call_SmallAfterLarge_PeerRegionPartlyHeld_GoesAtOnce()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(new PageRangeOptions { RegionFullTimeout = s_longRegionFull });
        Transaction held = default;
        Task server = Task.Factory.StartNew(() =>
        {
            while (true)
            {
                Transaction call;
                try
                {
                    call = pair.Server.Receive();
                }
                catch (Exception error) when (error is PeerDiedException or ObjectDisposedException)
                {
                    return;
                }
                int length = call.Deserialize<CallSizedBlob>().Data.Length;
                call.Reply(length);
                if (length > 1 << 20)
                {
                    // Kept: the request's 3 MiB stays in the 4 MiB region, which leaves less than its estimate (3.4 MiB).
                    held = call;
                }
                else
                {
                    call.Dispose();
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.Equal(3 << 20, pair.Client.Call<CallSizedBlob, int>(new CallSizedBlob(new byte[3 << 20]), OrderCode, timeout: TestTimeouts.Long));

        await Task.Run(() =>
        {
            for (int i = 1; i <= 3; i++)
            {
                Assert.Equal(i, pair.Client.Call<CallSizedBlob, int>(new CallSizedBlob(new byte[i]), OrderCode, timeout: TestTimeouts.Long));
            }
        }).WaitAsync(TestTimeouts.Short);
        Assert.True(held.IsLive);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Reply_SmallAfterLarge_ClientRegionPartlyHeld_GoesAtOnceAndTheClientStaysConnected()
    {
        string name = ControlHandshakeTests.UniqueName();
        var disconnected = new TaskCompletionSource<ClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        var options = new PageRangeServerOptions
        {
            MaxThreads = 2,
            StartShrinkerMonitor = false,
            // Long: a reply that waited for room would end only by the reply limit, closing the client.
            ConnectionOptions = new PageRangeOptions { RegionFullTimeout = s_longRegionFull },
        };
        await using var server = PageRangeServer.Start(name, options, builder => builder.Map<int, ReplySizedBlob>(
            OrderCode, (size, _) => new ReplySizedBlob(new byte[size])));
        server.ClientDisconnected += (_, e) => disconnected.TrySetResult(e);
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, new PageRangeOptions { RegionFullTimeout = s_longRegionFull })
            .AsTask().WaitAsync(TestTimeouts.Long);

        // Kept: the reply's 3 MiB stays in the client's 4 MiB region, which leaves less than the estimate (3.4 MiB).
        using Transaction held = await Task.Run(() => client.CallForReply(3 << 20, OrderCode, timeout: TestTimeouts.Long)).WaitAsync(TestTimeouts.Long);
        Assert.Equal(3 << 20, held.Deserialize<ReplySizedBlob>().Data.Length);
        for (int size = 1; size <= 3; size++)
        {
            ReplySizedBlob reply = await client.CallAsync<int, ReplySizedBlob>(size, OrderCode, timeout: TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal(size, reply.Data.Length);
        }
        Assert.False(disconnected.Task.IsCompleted);
        Assert.Equal(1, server.ClientCount);
    }

    [Theory]
    [MemberData(nameof(ReservedBufferTests.InvalidCallTimeouts), MemberType = typeof(ReservedBufferTests))]
    public async Task Call_InvalidTimeout_ThrowsOnBothPathsAndThePeerReceivesNothing(TimeSpan timeout)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // The copying path (a small message), then the reserved one: a 2000-byte message sets the estimate above the threshold.
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.Client.Call<Blob, int>(new Blob([1]), OrderCode, timeout: timeout));
        pair.Client.SendOneway(new TimeoutSizedBlob(new byte[2000]), OrderCode);
        pair.Server.Receive().Dispose();
        TimeoutSizedBlob request = new(new byte[2000]);
        // On a worker, bounded: a call published with such a timeout may wait for ever.
        await Task.Run(async () =>
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => pair.Client.Call<TimeoutSizedBlob, int>(request, OrderCode, timeout: timeout));
            Assert.Throws<ArgumentOutOfRangeException>(() => pair.Client.CallForReply(request, OrderCode, timeout: timeout));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await pair.Client.CallAsync<TimeoutSizedBlob, int>(request, OrderCode, timeout: timeout));

            Assert.False(pair.Server.TryReceive(out _));
            Assert.Equal(0, pair.Client.OutboundStats.ReservedBuffers);
        }).WaitAsync(TestTimeouts.Short);
    }

    [Fact]
    public async Task Parcel_AfterALargeMessage_IsNotKeptByTheThread()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(new PageRangeOptions { RegionSize = 8 << 20 });
        void SendAndReceive(int size)
        {
            pair.Client.SendOneway(new ParcelSizedBlob(new byte[size]), OrderCode);
            using Transaction received = pair.Server.Receive();
            Assert.Equal(size, received.Deserialize<ParcelSizedBlob>().Data.Length);
        }

        // On a thread of its own: the parcel is per thread, and nothing else may send on this one meanwhile.
        await Task.Factory.StartNew(() =>
        {
            // Copied (no estimate yet): serialized into the parcel, which grows to 4 MiB for it.
            SendAndReceive(3 << 20);
            Assert.InRange(PageRangeMessagePack.ParcelCapacityForTest, 0, PageRangeMessagePack.ParcelKeepLimit);
            // A small one is copied and its parcel kept.
            SendAndReceive(10);
            Assert.InRange(PageRangeMessagePack.ParcelCapacityForTest, 1, PageRangeMessagePack.ParcelKeepLimit);
            // Spilled: 2000 bytes set a 2 KiB estimate, then 3 MiB outgrows its reservation into the parcel.
            SendAndReceive(2000);
            SendAndReceive(3 << 20);
            Assert.InRange(PageRangeMessagePack.ParcelCapacityForTest, 0, PageRangeMessagePack.ParcelKeepLimit);
            SendAndReceive(10);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);
    }

    /// <summary>The server's handler: replies with the order, its id raised by 1000, through the typed reply.</summary>
    private static void EchoOrder(Transaction call)
    {
        Order order = call.Deserialize<Order>();
        order.Id += 1000;
        call.Reply(order);
    }

    private static void AssertSame(Order expected, Order actual) =>
        Assert.Equal(
            MessagePackSerializer.Serialize(expected, PageRangeMessagePack.DefaultOptions),
            MessagePackSerializer.Serialize(actual, PageRangeMessagePack.DefaultOptions));
}
