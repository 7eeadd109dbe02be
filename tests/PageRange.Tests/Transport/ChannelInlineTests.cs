using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small calls, replies and error replies carried inline in the transaction ring (<see cref="InlineLayout"/>): what goes
/// inline and what does not, the payload across the ring's wrap, the live count their frees give back, and the room
/// a buffer's record must always find.
/// </summary>
public sealed class ChannelInlineTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    // A 64-slot ring keeps 8 slots beyond the live limit (56) for inline payloads.
    private static ChannelOptions Options(int txRing = 64, int freeRing = 64, bool clear = false) => new()
    {
        RegionSize = 64L * s_page,
        TxRingCapacity = txRing,
        FreeRingCapacity = freeRing,
        PackSmallOneways = false,
        InlineSmallPayloads = true,
        ClearBuffersOnFree = clear,
    };

    private static readonly TransactionFlags[] s_kinds = [TransactionFlags.TwoWay, TransactionFlags.Reply, TransactionFlags.ErrorReply];

    private static RecordContext ContextOf(TransactionFlags kind, int i) => kind switch
    {
        TransactionFlags.TwoWay => new RecordContext((ulong)i + 1, (uint)(i % 3), CallStatus.Ok),
        TransactionFlags.ErrorReply => RecordContext.ForError((CallStatus)(1 + (i % (int)TransactionRecordLayout.MaxStatus))),
        _ => default,
    };

    [Fact]
    public void TrySend_EverySizeUpToTheInlineLimit_ArrivesInlineWithItsFieldsAndBytesAcrossTheRingsWrap()
    {
        using var pair = new ChannelPair(Options());
        var random = new Random(12);
        const int Count = 1_000;
        for (int i = 0; i < Count; i++)
        {
            // Every size up to the limit (0..64) many times: records of 1 or 2 slots, so they start at every place of
            // the 64-slot ring, a payload split from its record by the ring's end too.
            int size = i % (InlineLayout.MaxPayload + 1);
            byte[] payload = new byte[size];
            random.NextBytes(payload);
            TransactionFlags kind = s_kinds[i % s_kinds.Length];
            RecordContext context = ContextOf(kind, i);
            Assert.True(pair.Outbound.TrySend((ulong)i + 100, (uint)i, kind, payload, context));

            TransactionRecord record = pair.ReceiveOne();
            Assert.True(record.Inline);
            Assert.Equal((ulong)i + 100, record.TransactionId);
            Assert.Equal((uint)i, record.Code);
            Assert.Equal(kind, record.Flags);
            Assert.Equal(size, record.PayloadLength);
            Assert.Equal(0, record.MetadataLength);
            Assert.Equal(new ReceivedContext(context.ChainId, context.Depth, context.Status), record.Context);
            Assert.True(payload.AsSpan().SequenceEqual(pair.Inbound.GetPayload(record)), $"payload {i} of {size} bytes");
            pair.Inbound.Free(record);
            if (i % 10 == 9)
            {
                pair.Outbound.DrainFrees();
            }
        }
        pair.Outbound.DrainFrees();
        Assert.Equal(Count, pair.Outbound.InlineSent);
        Assert.Equal(Count, pair.Inbound.InlineReceived);
        // Every inline transaction came back as a free: nothing live, nothing ignored, no buffer ever reserved.
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.InlineLive);
        Assert.Equal(0, pair.Outbound.IgnoredFrees);
        Assert.Equal(0, pair.Outbound.Allocator.GetStats().BufferCount);
        Assert.True(pair.Outbound.Sent > (ulong)Count, "payload slots follow the records on the ring");
    }

    [Fact]
    public void TrySend_WhatMayNotGoInline_GoesAsABuffer()
    {
        using var pair = new ChannelPair(Options());
        var metadata = new RecordContext(1, 0, CallStatus.Ok, new byte[16]);
        (string What, Func<bool> Send)[] cases =
        [
            ("one byte over the limit", () => pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, new byte[InlineLayout.MaxPayload + 1], new RecordContext(1, 0, CallStatus.Ok))),
            ("a oneway", () => pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, new byte[8])),
            ("a call with metadata", () => pair.Outbound.TrySend(3, 0, TransactionFlags.TwoWay, new byte[8], metadata)),
            ("a clear-on-free reply", () => pair.Outbound.TrySend(4, 0, TransactionFlags.Reply | TransactionFlags.ClearOnFree, new byte[8])),
        ];
        foreach ((string what, Func<bool> send) in cases)
        {
            Assert.True(send(), what);
            TransactionRecord record = pair.ReceiveOne();
            Assert.False(record.Inline, what);
            pair.Inbound.Free(record);
        }
        Assert.Equal(0, pair.Outbound.InlineSent);
    }

    [Fact]
    public void TrySend_ChannelClearingEveryBuffer_SendsNothingInline()
    {
        // Clear-on-free for every buffer (a channel for secrets): a payload inline would stay in the ring's slots.
        using var pair = new ChannelPair(Options(clear: true));
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Reply, new byte[8]));
        Assert.False(pair.ReceiveOne().Inline);
        Assert.Equal(0, pair.Outbound.InlineSent);
    }

    [Theory]
    [InlineData(32, 64, 0)]
    [InlineData(32, 16, 4)]
    [InlineData(64, 64, 4)]
    [InlineData(64, 16, 4)]
    public void TrySend_InlineOnlyWhenTheRingHasSlotsBeyondTheLiveLimit(int txRing, int freeRing, int inline)
    {
        // A 32-slot ring keeps no eighth for inline payloads: with a larger free ring its live limit is the ring, no
        // surplus, nothing inline; with a 16-slot free ring the live limit is 16 and the surplus 16. A 64-slot ring keeps
        // 8 (live limit 56), or has 48 beyond a 16-slot free ring's limit.
        using var pair = new ChannelPair(Options(txRing, freeRing));
        for (int i = 0; i < 4; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.Reply, new byte[64]));
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.Equal(inline, pair.Outbound.InlineSent);
    }

    [Fact]
    public void TrySend_ManyConsumedButNotFreed_InlineLeavesARingSlotForEveryBufferThatMayStillGoLive()
    {
        // The case a first version of the rule missed: transactions the receiver has taken but not freed make the live
        // count high while the ring looks empty; once they are freed, every buffer the writer may then make live must
        // still find a ring slot even with inline payloads waiting there.
        using var pair = new ChannelPair(Options());
        int maxLive = pair.Outbound.Layout.MaxLiveBuffers;
        var held = new List<TransactionRecord>();
        for (int i = 0; i < maxLive - 12; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.Reply, new byte[300]));
            held.Add(pair.ReceiveOne());
        }
        // Inline while the waiting slots stay within the surplus (8, two slots each: four), then buffers. Without the
        // rule all twelve would go inline and the buffers below would find the ring full.
        var waiting = new List<byte[]>();
        for (int i = 0; i < 12; i++)
        {
            byte[] payload = [(byte)i, .. new byte[63]];
            Assert.True(pair.Outbound.TrySend(1000 + (ulong)i, 0, TransactionFlags.Reply, payload));
            waiting.Add(payload);
        }
        Assert.Equal(4, pair.Outbound.InlineSent);
        foreach (TransactionRecord record in held)
        {
            pair.Inbound.Free(record);
        }
        pair.Outbound.DrainFrees();
        // Now fill the live limit with buffers while the inline records still wait: no "ring full" violation.
        int more = maxLive - pair.Outbound.LiveBuffers;
        for (int i = 0; i < more; i++)
        {
            Assert.True(pair.Outbound.TrySend(2000 + (ulong)i, 0, TransactionFlags.Reply, new byte[300]), $"buffer {i} of {more}");
        }
        Assert.False(pair.Outbound.TrySend(9999, 0, TransactionFlags.Reply, new byte[300]), "the live limit is reached");
        // Everything arrives in order, the inline ones first with their bytes.
        for (int i = 0; i < waiting.Count; i++)
        {
            TransactionRecord record = pair.ReceiveOne();
            Assert.Equal(1000 + (ulong)i, record.TransactionId);
            Assert.True(waiting[i].AsSpan().SequenceEqual(pair.Inbound.GetPayload(record)));
            pair.Inbound.Free(record);
        }
        for (int i = 0; i < more; i++)
        {
            TransactionRecord record = pair.ReceiveOne();
            Assert.Equal(2000 + (ulong)i, record.TransactionId);
            pair.Inbound.Free(record);
        }
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.InlineLive);
    }

    [Fact]
    public void TrySend_AtTheLiveLimit_InlineWaitsForAFreeAsABufferDoes()
    {
        using var pair = new ChannelPair(Options());
        int maxLive = pair.Outbound.Layout.MaxLiveBuffers;
        var records = new List<TransactionRecord>();
        for (int i = 0; i < maxLive; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.Reply, new byte[8]), $"send {i}");
            records.Add(pair.ReceiveOne());
        }
        // Each was taken at once, so nothing waited on the ring: all of them went inline.
        Assert.Equal(maxLive, pair.Outbound.InlineSent);
        Assert.False(pair.Outbound.TrySend(500, 0, TransactionFlags.Reply, new byte[8]));
        pair.Inbound.Free(records[0]);
        Assert.True(pair.Outbound.TrySend(501, 0, TransactionFlags.Reply, new byte[8]));
        Assert.Equal(maxLive, pair.Outbound.LiveBuffers);
        Assert.Equal(maxLive + 1, pair.Outbound.InlineSent);
    }
}
