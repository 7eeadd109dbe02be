using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>The writer reads the receiver's frees in batches, and always before it reports the region full.</summary>
public sealed class ChannelLazyFreeTests
{
    [Fact]
    public void TrySend_FewBuffersLive_LeavesFreesOnTheRingUntilABatchIsLive()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, new byte[64]));
        pair.Inbound.Free(pair.ReceiveOne());
        // The free is published, but a send with a single buffer live does not read the free ring's lines.
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(2, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.BuffersFreed);
        pair.Inbound.Free(pair.ReceiveOne());

        for (ulong id = 3; pair.Outbound.LiveBuffers < OutboundChannel.LazyDrainBuffers; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]));
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.Equal(0, pair.Outbound.BuffersFreed);
        // A batch is live: the next send drains every free first (all of them were freed), then reserves.
        Assert.True(pair.Outbound.TrySend(99, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        Assert.Equal(OutboundChannel.LazyDrainBuffers, pair.Outbound.BuffersFreed);
    }

    [Fact]
    public void TrySend_RegionFullOfFreedBuffers_DrainsAndSucceeds()
    {
        // Four slots per ring: at most four buffers live, fewer than a lazy batch, so the live limit is what fills.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(rings: 4, pack: false));
        Assert.True(pair.Outbound.Layout.MaxLiveBuffers < OutboundChannel.LazyDrainBuffers);
        for (ulong id = 0; id < 100; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]), $"send {id} found the region full");
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.InRange(pair.Outbound.LiveBuffers, 1, pair.Outbound.Layout.MaxLiveBuffers);
    }

    [Fact]
    public void TrySend_LargerMessage_DrainsFirstAndReusesTheFreedBuffer()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        byte[] large = new byte[OutboundChannel.LazyDrainMaxMessage + 1];
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, large));
        TransactionRecord first = pair.ReceiveOne();
        pair.Inbound.Free(first);
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, large));
        Assert.Equal(1, pair.Outbound.BuffersFreed);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
        // Taken back before the reservation, so the same (still backed) buffer is reused.
        Assert.Equal(first.Offset, pair.ReceiveOne().Offset);
    }

    [Fact]
    public void TrySend_ClearOnFreeSent_DrainsAtEverySend()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway | TransactionFlags.ClearOnFree, new byte[64]));
        pair.Inbound.Free(pair.ReceiveOne());
        // The secret's buffer is taken back (and zeroed) by the very next send, not a batch later.
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1, pair.Outbound.BuffersFreed);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void TrySend_StreamKeepsABatchLive_DrainsOncePerBatchOfSendsNotAtEverySend()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        const int batch = OutboundChannel.LazyDrainBuffers;
        var received = new Queue<TransactionRecord>();
        ulong id = 0;
        // A receiver a batch behind (as in a stream): a batch live, then the oldest freed before every send.
        for (; id < batch; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, new byte[64]));
            received.Enqueue(pair.ReceiveOne());
        }
        pair.Inbound.Free(received.Dequeue());
        Assert.True(pair.Outbound.TrySend(id++, 0, TransactionFlags.Oneway, new byte[64]));
        received.Enqueue(pair.ReceiveOne());
        // That send found a batch live and a batch of sends since the start: it took the one free.
        Assert.Equal(1, pair.Outbound.BuffersFreed);

        // Now more than a batch stays live while frees keep coming: the next batch-1 sends leave them on the ring.
        for (int i = 0; i < batch - 1; i++)
        {
            pair.Inbound.Free(received.Dequeue());
            Assert.True(pair.Outbound.TrySend(id++, 0, TransactionFlags.Oneway, new byte[64]));
            received.Enqueue(pair.ReceiveOne());
            Assert.True(pair.Outbound.LiveBuffers > batch, "the frees of this batch were taken early");
            Assert.Equal(1, pair.Outbound.BuffersFreed);
        }
        // The batch-th send since the last drain takes every free published since.
        pair.Inbound.Free(received.Dequeue());
        Assert.True(pair.Outbound.TrySend(id++, 0, TransactionFlags.Oneway, new byte[64]));
        Assert.Equal(1 + batch, pair.Outbound.BuffersFreed);
        Assert.Equal(batch, pair.Outbound.LiveBuffers);
    }
}
