using PageRange.Allocation;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Fewer locks per message: the writer's send lock is its allocator's lock, and the receiver's free lock is the one
/// its owner frees under. What may race still races safely: senders, frees, stats readers and the shrinker.
/// </summary>
public sealed class ChannelSharedLockTests
{
    [Fact]
    public void FreeUnderLock_HoldingTheFreeLock_PublishesTheFreeTheWriterTakes()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        TransactionRecord record = pair.ReceiveOne();
        using (pair.Inbound.FreeLock.EnterScope())
        {
            pair.Inbound.FreeUnderLock(record);
        }
        Assert.Equal(1UL, pair.Inbound.Freed);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.BuffersFreed);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void FreeUnderLock_FreeRingFull_ThrowsProtocolViolation()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(rings: 4, pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        TransactionRecord record = pair.ReceiveOne();
        using (pair.Inbound.FreeLock.EnterScope())
        {
            // The same buffer freed over and over: a ring's worth fits, the next is the writer's problem no more.
            for (int i = 0; i < 4; i++)
            {
                pair.Inbound.FreeUnderLock(record);
            }
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.FreeUnderLock(record));
        }
    }

    [Fact]
    public async Task Send_ConcurrentSendersFreesStatsAndShrinks_BookkeepingStaysConsistent()
    {
        const int perSender = 20_000;
        const int senders = 2;
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 32, rings: 128, WaitStrategy.Park));
        using var done = new CancellationTokenSource();

        Task[] writers = [.. Enumerable.Range(0, senders).Select(sender => Task.Factory.StartNew(
            () =>
            {
                byte[] buffer = new byte[3000];
                for (int i = 0; i < perSender; i++)
                {
                    // Sizes on both sides of the lazy-drain limit, so both drain paths run.
                    int size = (i * 131) % buffer.Length;
                    // Both kinds of slab (oneway, and calls and replies) and buffers, from both senders.
                    TransactionFlags flags = (i % 3) switch { 0 => TransactionFlags.TwoWay, 1 => TransactionFlags.Reply, _ => TransactionFlags.Oneway };
                    pair.Outbound.Send((ulong)((sender * perSender) + i), 0, flags, buffer.AsSpan(0, size), TestTimeouts.Long, default);
                }
            },
            TaskCreationOptions.LongRunning))];

        Task reader = Task.Factory.StartNew(
            () =>
            {
                int received = 0;
                while (received < senders * perSender)
                {
                    if (!pair.Inbound.TryReceive(out TransactionRecord record))
                    {
                        Assert.True(pair.Inbound.WaitForTransaction(TestTimeouts.Long, default), $"transaction {received} arrived in time");
                        continue;
                    }
                    pair.Inbound.Free(record);
                    received++;
                }
            },
            TaskCreationOptions.LongRunning);

        // The allocator's lock is the send lock now: readers of its stats and the shrinker race the sends.
        Task observer = Task.Factory.StartNew(
            () =>
            {
                while (!done.IsCancellationRequested)
                {
                    BufferAllocatorStats stats = pair.Outbound.Allocator.GetStats();
                    Assert.InRange(stats.BufferCount, 0, pair.Outbound.Layout.MaxLiveBuffers);
                    _ = pair.Outbound.IgnoredFrees;
                    _ = pair.Outbound.DumpState();
                    pair.Shrinker.Scan(8);
                    pair.Outbound.DrainFreesAndReleaseIdleSlab();
                    Thread.Yield();
                }
            },
            TaskCreationOptions.LongRunning);

        try
        {
            await Task.WhenAll([.. writers, reader]).WaitAsync(TimeSpan.FromSeconds(120));
        }
        finally
        {
            done.Cancel();
        }
        await observer.WaitAsync(TestTimeouts.Long);

        pair.Outbound.DrainFreesAndReleaseIdleSlab();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Outbound.Allocator.BufferCount);
        pair.Outbound.Allocator.Validate();
        // Every page went back to Available (or was reclaimed): the shrinker can take all that is backed.
        pair.Shrinker.Scan(long.MaxValue);
        Assert.Equal(pair.Inbound.Layout.HeaderBytes, pair.Inbound.Region.ResidentBytes);
    }
}
