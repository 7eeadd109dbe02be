using PageRange.Testing;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Two-way calls and oneway streams between this process and a real TestHost process, through both regions: every
/// byte arrives, in order, with several threads on either side, and a handler may call back into its caller.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class TransportCallTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(WaitStrategy.SpinThenPark)]
    [InlineData(WaitStrategy.Park)]
    public async Task Call_EchoEverySize_ReturnsEveryByte(WaitStrategy wait)
    {
        await using TransportHost host = await TransportHost.StartAsync(output, TransportHost.DefaultOptions(wait), "--wait", wait.ToString());
        PageRangeConnection connection = host.Connection;
        // The largest that fits: the host's whole data area for the request, ours for the reply (the same size here).
        long largest = Math.Min(connection.MaxMessageSize, host.HostMaxMessageSize);
        Assert.True(largest > 1 << 20, $"the largest message ({largest}) should exceed 1 MiB");
        // Around the direct lines' limits (one payload line, two: DirectCallLayout.MaxPayload) and far beyond them.
        int[] sizes = [0, 1, 63, 64, 65, 127, 128, 129, 192, 256, 4095, 4096, 4097, 1 << 20, (int)largest];
        int direct = sizes.Count(size => size <= DirectCallLayout.MaxPayload);
        var random = new Random(42);

        foreach (int size in sizes)
        {
            byte[] payload = new byte[size];
            random.NextBytes(payload);
            using Transaction reply = connection.Call(TransportHost.Codes.Echo, payload, TestTimeouts.Long);
            Assert.Equal(size, reply.Length);
            Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"the echo of {size} bytes differs");
            Assert.True(reply.Memory.Span.SequenceEqual(payload), $"the echo's memory of {size} bytes differs");
        }

        // Requests up to the limit were written into the host's direct call lines and their echoes into our direct reply
        // lines (DirectCallLayout, DirectReplyLayout: two payload lines), between two processes; nothing larger was, and
        // nothing went inline in the ring.
        Assert.Equal(direct, connection.Outbound.DirectCallsSent);
        Assert.Equal(direct, connection.Inbound.DirectRepliesReceived);
        Assert.Equal(0, connection.Outbound.InlineSent);
        Assert.Equal(0, connection.Inbound.InlineReceived);

        // One byte more than the largest can never fit: refused at once, before anything is sent.
        Assert.Throws<MessageTooLargeException>(() => connection.Call(TransportHost.Codes.Echo, new byte[largest + 1], TestTimeouts.Long));
        using Transaction after = connection.Call(TransportHost.Codes.Echo, "still fine"u8, TestTimeouts.Long);
        Assert.Equal("still fine"u8.ToArray(), after.Payload.ToArray());
    }

    [Fact]
    public async Task CallAsync_EchoSizes_ReturnsEveryByte()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        var random = new Random(7);
        foreach (int size in new[] { 0, 1, 4097, 1 << 20 })
        {
            byte[] payload = new byte[size];
            random.NextBytes(payload);
            using Transaction reply = await host.Connection.CallAsync(TransportHost.Codes.Echo, payload, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
            Assert.True(payload.AsSpan().SequenceEqual(reply.Payload), $"the async echo of {size} bytes differs");
        }
    }

    [Fact]
    public async Task SendOneway_HundredThousand_ArriveInOrderWithMatchingChecksums()
    {
        // Two receiving threads on the host: oneway messages must still be handed out one at a time, in order.
        await using TransportHost host = await TransportHost.StartAsync(output, null, "--receivers", "2");
        const int Count = 100_000;
        byte[] buffer = new byte[StreamMessage.MaxLength];

        for (ulong sequence = 0; sequence < Count; sequence++)
        {
            Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
            StreamMessage.Write(message, sequence);
            host.Connection.SendOneway(TransportHost.Codes.Stream, message);
        }

        (long received, long next, long errors) = await host.WaitForStreamAsync(Count);
        Assert.Equal(0, errors);
        Assert.Equal(Count, received);
        Assert.Equal(Count, next);
    }

    [Fact]
    public async Task Receive_HundredThousandFromHost_ArriveInOrderWithMatchingChecksums()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        const int Count = 100_000;
        host.Process.WriteLine($"send-stream {Count}");

        for (ulong expected = 0; expected < Count; expected++)
        {
            using Transaction transaction = await ReceiveBoundedAsync(host.Connection);
            Assert.True(transaction.IsOneway);
            Assert.Equal(TransportHost.Codes.Stream, transaction.Code);
            Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
        }
        Assert.Equal($"{Count}", host.Process.ReadUntil("sent: "));
    }

    [Fact]
    public async Task Call_FourThreadsAtOnce_EachGetsItsOwnReplies()
    {
        await using TransportHost host = await TransportHost.StartAsync(output, null, "--receivers", "4");
        const int Threads = 4;
        const int CallsPerThread = 2_000;
        int mismatches = 0;
        using var start = new Barrier(Threads);

        Task[] callers = Enumerable.Range(0, Threads).Select(thread => Task.Factory.StartNew(() =>
        {
            var random = new Random(thread);
            byte[] payload = new byte[4096 + 64];
            start.SignalAndWait(TestTimeouts.Long);
            for (int i = 0; i < CallsPerThread; i++)
            {
                int size = random.Next(8, payload.Length);
                random.NextBytes(payload.AsSpan(0, size));
                BitConverter.TryWriteBytes(payload, (thread << 24) | i);
                using Transaction reply = host.Connection.Call(TransportHost.Codes.Echo, payload.AsSpan(0, size), TestTimeouts.Long);
                if (!reply.Payload.SequenceEqual(payload.AsSpan(0, size)))
                {
                    Interlocked.Increment(ref mismatches);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(callers).WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, mismatches);
        Assert.Equal((0, 0), host.Live());
        Assert.Equal(0, host.Connection.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Call_HandlerCallsBackIntoCaller_NestedCallAnsweredByOurReceivingThread()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        PageRangeConnection connection = host.Connection;
        using var stop = new CancellationTokenSource();
        int served = 0;
        // The nested call is handed to a receiving thread of ours; the calling thread only waits for its own reply.
        Task receiver = Task.Factory.StartNew(() =>
        {
            try
            {
                while (true)
                {
                    using Transaction incoming = connection.Receive(stop.Token);
                    Assert.Equal(TransportHost.Codes.Echo, incoming.Code);
                    Assert.True(incoming.IsTwoWay);
                    incoming.Reply(incoming.Payload);
                    Interlocked.Increment(ref served);
                }
            }
            catch (OperationCanceledException)
            {
                // The test is over.
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        for (int i = 0; i < 100; i++)
        {
            byte[] payload = BitConverter.GetBytes(i * 7919);
            using Transaction reply = connection.Call(TransportHost.Codes.Nested, payload, TestTimeouts.Long);
            Assert.Equal(payload, reply.Payload.ToArray());
        }
        using (Transaction asyncReply = await connection.CallAsync(TransportHost.Codes.Nested, new byte[5000], TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(5000, asyncReply.Length);
        }

        await stop.CancelAsync();
        await receiver.WaitAsync(TestTimeouts.Long);
        Assert.Equal(101, served);
    }

    internal static async Task<Transaction> ReceiveBoundedAsync(PageRangeConnection connection)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        return await connection.ReceiveAsync(timeout.Token).AsTask().WaitAsync(TestTimeouts.Long);
    }
}
