using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The receiver's batches on the channel: several records taken under one receive lock with one head store, frees
/// written as they come and published once per batch (or at once when they must not wait).
/// </summary>
public sealed class ChannelReceiveBatchTests
{
    private static readonly ChannelOptions Options = ChannelPair.SmallOptions(pack: false);

    [Fact]
    public void TryReceiveBatch_SeveralPublished_TakesThemInOrderAndStoresTheHeadOnceForAll()
    {
        using var pair = new ChannelPair(Options);
        for (ulong id = 1; id <= 5; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, (uint)id, TransactionFlags.Oneway, [(byte)id]));
        }
        var batch = new TransactionRecord[InboundChannel.ReceiveBatch];

        Assert.Equal(5, pair.Inbound.TryReceiveBatch(batch));

        for (int i = 0; i < 5; i++)
        {
            Assert.Equal((ulong)i + 1, batch[i].TransactionId);
            Assert.Equal((byte)(i + 1), pair.Inbound.GetPayload(batch[i])[0]);
        }
        Assert.Equal(5UL, pair.ReadHeader<ulong>(RegionHeaderLayout.TxHeadOffset));
        Assert.Equal(5UL, pair.Inbound.Received);
        Assert.Equal(0, pair.Inbound.TryReceiveBatch(batch));
    }

    [Fact]
    public void TryReceiveBatch_FewerSlotsThanRecords_TakesOnlyWhatFitsAndLeavesTheRestOnTheRing()
    {
        using var pair = new ChannelPair(Options);
        for (ulong id = 1; id <= 5; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, [1]));
        }
        var batch = new TransactionRecord[3];

        Assert.Equal(3, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(3UL, pair.ReadHeader<ulong>(RegionHeaderLayout.TxHeadOffset));
        Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(4UL, batch[0].TransactionId);
        Assert.Equal(5UL, pair.ReadHeader<ulong>(RegionHeaderLayout.TxHeadOffset));
    }

    [Fact]
    public void TryReceiveBatch_BadRecordAfterGoodOnes_ReturnsTheGoodOnesThenThrowsWithoutConsumingIt()
    {
        using var pair = new ChannelPair(Options);
        for (ulong id = 1; id <= 3; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, [1, 2, 3]));
        }
        // The third record is spoiled in place, as a misbehaving writer would leave it.
        int slot = pair.Inbound.Layout.TxRingOffset + (2 * TransactionRecordLayout.Size);
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
        record.Reserved0 = 1;
        pair.WriteHeader(slot, record);
        var batch = new TransactionRecord[InboundChannel.ReceiveBatch];

        Assert.Equal(2, pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(2UL, pair.ReadHeader<ulong>(RegionHeaderLayout.TxHeadOffset));

        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceiveBatch(batch));
        Assert.Equal(2UL, pair.Inbound.Received);
    }

    [Fact]
    public void FreeUnderLock_Deferred_WriterSeesNothingUntilPublished()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        TransactionRecord record = pair.ReceiveOne();

        using (pair.Inbound.FreeLock.EnterScope())
        {
            pair.Inbound.FreeUnderLock(record, deferPublish: true);
        }

        Assert.Equal(1, pair.Inbound.UnpublishedFrees);
        Assert.Equal(0UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
        Assert.Equal(0, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        using (pair.Inbound.FreeLock.EnterScope())
        {
            pair.Inbound.PublishFreesUnderLock();
        }

        Assert.Equal(0, pair.Inbound.UnpublishedFrees);
        Assert.Equal(1UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void FreeUnderLock_DeferredBatchFills_OneTailStoreCoversTheBatch()
    {
        using var pair = new ChannelPair(Options);
        int count = InboundChannel.FreeBatch + 3;
        for (ulong id = 1; id <= (ulong)count; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]));
        }
        var batch = new TransactionRecord[count];
        Assert.Equal(count, pair.Inbound.TryReceiveBatch(batch));

        using (pair.Inbound.FreeLock.EnterScope())
        {
            for (int i = 0; i < count; i++)
            {
                pair.Inbound.FreeUnderLock(batch[i], deferPublish: true);
                ulong tail = pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset);
                // Published exactly when the batch is full: a 16th held free goes with the 15 before it.
                Assert.Equal(i + 1 >= InboundChannel.FreeBatch ? (ulong)InboundChannel.FreeBatch : 0UL, tail);
                if (i + 1 == InboundChannel.FreeBatch)
                {
                    Assert.Equal(0, pair.Inbound.UnpublishedFrees);
                }
            }
        }

        Assert.Equal(3, pair.Inbound.UnpublishedFrees);
        Assert.Equal(InboundChannel.FreeBatch, pair.Outbound.DrainFrees());
    }

    [Theory]
    [InlineData(InboundChannel.FreeBatchMaxLength + 8, false)]
    [InlineData(64, true)]
    public void FreeUnderLock_LargeOrClearOnFree_PublishedAtOnceEvenWhenDeferred(int length, bool clearOnFree)
    {
        using var pair = new ChannelPair(Options);
        TransactionFlags flags = TransactionFlags.Oneway | (clearOnFree ? TransactionFlags.ClearOnFree : 0);
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[length]));
        TransactionRecord record = pair.ReceiveOne();

        using (pair.Inbound.FreeLock.EnterScope())
        {
            pair.Inbound.FreeUnderLock(record, deferPublish: true);
        }

        Assert.Equal(0, pair.Inbound.UnpublishedFrees);
        Assert.Equal(1UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
    }

    [Fact]
    public void FreeUnderLock_WriterParkedOnTheFreeDoorbell_PublishedAtOnceEvenWhenDeferred()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        TransactionRecord record = pair.ReceiveOne();
        // As a writer waiting for room announces itself.
        pair.WriteHeader(RegionHeaderLayout.FreeDoorbellParkedOffset, 1);
        try
        {
            using (pair.Inbound.FreeLock.EnterScope())
            {
                pair.Inbound.FreeUnderLock(record, deferPublish: true);
            }
        }
        finally
        {
            pair.WriteHeader(RegionHeaderLayout.FreeDoorbellParkedOffset, 0);
        }

        Assert.Equal(0, pair.Inbound.UnpublishedFrees);
        Assert.Equal(1UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
    }

    [Fact]
    public void FreeUnderLock_NotDeferredAfterHeldOnes_PublishesThemAllInOrder()
    {
        using var pair = new ChannelPair(Options);
        for (ulong id = 1; id <= 3; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]));
        }
        var batch = new TransactionRecord[3];
        Assert.Equal(3, pair.Inbound.TryReceiveBatch(batch));

        using (pair.Inbound.FreeLock.EnterScope())
        {
            pair.Inbound.FreeUnderLock(batch[0], deferPublish: true);
            pair.Inbound.FreeUnderLock(batch[1], deferPublish: true);
            Assert.Equal(0UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
            pair.Inbound.FreeUnderLock(batch[2]);
        }

        Assert.Equal(3UL, pair.ReadHeader<ulong>(RegionHeaderLayout.FreeTailOffset));
        Assert.Equal(3, pair.Outbound.DrainFrees());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void FreeUnderLock_HeldFreesFillTheRing_StillAViolation()
    {
        // A writer that keeps more buffers live than the free ring holds is caught when the free is written, held or not.
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        TransactionRecord record = pair.ReceiveOne();
        using (pair.Inbound.FreeLock.EnterScope())
        {
            for (int i = 0; i < pair.Inbound.Layout.FreeRingCapacity; i++)
            {
                pair.Inbound.FreeUnderLock(record, deferPublish: true);
            }
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.FreeUnderLock(record, deferPublish: true));
        }
    }
}
