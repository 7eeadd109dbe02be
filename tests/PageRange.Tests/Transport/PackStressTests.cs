using System.Collections.Concurrent;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// Packs under races: several senders, calls and large oneways interleaved (each seals the pack), a receiver taking
/// batches while another thread frees (the pack's free written by whichever side drops its last reference), the writer's
/// housekeeping sealing and the shrinker running; every message arrives whole, each sender's in order, and every pack
/// is freed in the end.
/// </summary>
public sealed class PackStressTests
{
    private const int Senders = 3;

    [Fact]
    public async Task Channel_SendersReceiverFreerHousekeepingAndShrinker_AllDeliveredInOrderAndEveryPackFreed()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 128, rings: 128, WaitStrategy.SpinThenPark));
        const int perSender = 6_000;
        using var stop = new CancellationTokenSource();
        var toFree = new ConcurrentQueue<TransactionRecord>();
        long[] next = new long[Senders];
        int errors = 0;
        int received = 0;

        Task[] senders = Enumerable.Range(0, Senders).Select(s => Task.Factory.StartNew(() =>
        {
            var random = new Random(s);
            for (int i = 0; i < perSender; i++)
            {
                ulong id = ((ulong)s << 32) | (uint)i;
                int roll = random.Next(100);
                int size = roll < 3 ? 600 + random.Next(3000) : random.Next(PackLayout.MaxPayload + 1);
                TransactionFlags flags = roll is >= 3 and < 6 ? TransactionFlags.TwoWay : TransactionFlags.Oneway;
                byte[] payload = ChannelPair.PayloadFor(id, size);
                RecordContext context = flags == TransactionFlags.TwoWay ? new RecordContext(1, 0, CallStatus.Ok) : default;
                pair.Outbound.Send(id, ChannelPair.Checksum(payload), flags, payload, TestTimeouts.Long, default, context);
            }
        }, TaskCreationOptions.LongRunning)).ToArray();

        Task receiver = Task.Factory.StartNew(() =>
        {
            var batch = new TransactionRecord[InboundChannel.ReceiveBatch];
            while (Volatile.Read(ref received) < Senders * perSender)
            {
                int taken = pair.Inbound.TryReceiveBatch(batch);
                if (taken == 0)
                {
                    pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(5), default);
                    continue;
                }
                foreach (TransactionRecord record in batch.AsSpan(0, taken))
                {
                    ReadOnlySpan<byte> payload = pair.Inbound.GetPayload(record);
                    int sender = (int)(record.TransactionId >> 32);
                    long seq = (uint)record.TransactionId;
                    if (ChannelPair.Checksum(payload) != record.Code || !payload.SequenceEqual(ChannelPair.PayloadFor(record.TransactionId, payload.Length))
                        || seq != next[sender])
                    {
                        Interlocked.Increment(ref errors);
                    }
                    next[sender] = seq + 1;
                    toFree.Enqueue(record);
                    Interlocked.Increment(ref received);
                }
            }
        }, TaskCreationOptions.LongRunning);

        Task freer = Task.Factory.StartNew(() =>
        {
            var random = new Random(99);
            while (!stop.IsCancellationRequested || !toFree.IsEmpty)
            {
                if (toFree.TryDequeue(out TransactionRecord record))
                {
                    if (random.Next(64) == 0)
                    {
                        Thread.Yield();
                    }
                    pair.Inbound.Free(record);
                }
                else
                {
                    Thread.Yield();
                }
            }
        }, TaskCreationOptions.LongRunning);

        Task housekeeping = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                pair.Outbound.DrainFreesAndReleaseIdleSlab();
                pair.Shrinker.Scan(long.MaxValue);
                Thread.Sleep(1);
            }
        }, TaskCreationOptions.LongRunning);

        await Task.WhenAll(senders).WaitAsync(TestTimeouts.Long);
        await receiver.WaitAsync(TestTimeouts.Long);
        stop.Cancel();
        await Task.WhenAll(freer, housekeeping).WaitAsync(TestTimeouts.Long);

        Assert.Equal(0, errors);
        Assert.Equal(Senders * perSender, received);
        Assert.True(pair.Outbound.PacksOpened > 10, $"{pair.Outbound.PacksOpened} packs");
        // Idle: seal the last pack, let the receiver finish it, take every free back.
        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Inbound.TryReceiveBatch(new TransactionRecord[4]));
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Inbound.PackedLive);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(pair.Inbound.Layout.HeaderBytes, pair.Inbound.Region.ResidentBytes);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Connection_SendersCallsHandlerThreadsAndTheShrinker_OnewaysInOrderAndNothingLeftLive(bool rest)
    {
        // Both ways on every machine: 48 full packs rest and are recycled (the default but on AMD processors, where 4 rest),
        // or none rests and each goes straight back.
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.RestFullPacks = rest;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int perSender = 3_000;
        using var stop = new CancellationTokenSource();
        long[] next = new long[Senders];
        int errors = 0;
        int oneways = 0;

        // Two server threads receive; a oneway is disposed on a third thread (a handler's free from elsewhere).
        var handoff = new BlockingCollection<Transaction>();
        Thread[] receivers = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
        {
            try
            {
                while (true)
                {
                    Transaction transaction = pair.Server.Receive(stop.Token);
                    if (transaction.IsTwoWay)
                    {
                        transaction.Reply(transaction.Payload);
                        transaction.Dispose();
                        continue;
                    }
                    ReadOnlySpan<byte> payload = transaction.Payload;
                    int sender = payload[0];
                    long seq = BitConverter.ToInt32(payload[1..]);
                    if (seq != next[sender] || transaction.Code != ChannelPair.Checksum(payload))
                    {
                        Interlocked.Increment(ref errors);
                    }
                    next[sender] = seq + 1;
                    Interlocked.Increment(ref oneways);
                    handoff.Add(transaction);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }) { IsBackground = true }).ToArray();
        var disposer = new Thread(() =>
        {
            foreach (Transaction transaction in handoff.GetConsumingEnumerable())
            {
                transaction.Dispose();
            }
        }) { IsBackground = true };
        foreach (Thread thread in receivers)
        {
            thread.Start();
        }
        disposer.Start();
        var shrinker = new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                Shrinker.Shared.Scan(long.MaxValue);
                Thread.Sleep(2);
            }
        }) { IsBackground = true };
        shrinker.Start();

        Task[] senders = Enumerable.Range(0, Senders).Select(s => Task.Factory.StartNew(() =>
        {
            var random = new Random(s);
            for (int i = 0; i < perSender; i++)
            {
                byte[] payload = new byte[5 + random.Next(PackLayout.MaxPayload - 5)];
                random.NextBytes(payload);
                payload[0] = (byte)s;
                BitConverter.TryWriteBytes(payload.AsSpan(1), i);
                pair.Client.SendOneway(ChannelPair.Checksum(payload), payload);
                if (i % 97 == 0)
                {
                    using Transaction reply = pair.Client.Call(1, payload, TestTimeouts.Long);
                    if (!reply.Payload.SequenceEqual(payload))
                    {
                        Interlocked.Increment(ref errors);
                    }
                }
            }
        }, TaskCreationOptions.LongRunning)).ToArray();
        await Task.WhenAll(senders).WaitAsync(TestTimeouts.Long);
        await WaitUntilAsync(() => Volatile.Read(ref oneways) == Senders * perSender, "every oneway arrived");
        stop.Cancel();
        handoff.CompleteAdding();
        foreach (Thread thread in receivers)
        {
            thread.Join(TestTimeouts.Long);
        }
        disposer.Join(TestTimeouts.Long);
        shrinker.Join(TestTimeouts.Long);

        Assert.Equal(0, errors);
        Assert.True(pair.Client.Outbound.PackedSent > perSender);
        await WaitUntilAsync(() => pair.Server.LiveIncomingTransactions == 0 && pair.Client.Outbound.LiveBuffers == 0, "every pack was sealed and freed");
    }
}
