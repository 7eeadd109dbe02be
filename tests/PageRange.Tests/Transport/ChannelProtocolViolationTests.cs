using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>A peer that writes garbage into the shared header: the reading side throws ProtocolViolationException, nothing else.</summary>
public sealed class ChannelProtocolViolationTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    // One record per message: these tests spoil a message's own record (packs have their own hostile tests).
    private static ChannelOptions Options => new() { RegionSize = 16L * s_page, TxRingCapacity = 4, FreeRingCapacity = 4, PackSmallOneways = false };

    [Theory]
    [InlineData(5UL)]
    [InlineData(ulong.MaxValue)]
    public void TryReceive_TxTailMoreThanARingAhead_ThrowsEveryTime(ulong tail)
    {
        using var pair = new ChannelPair(Options);
        pair.WriteHeader(RegionHeaderLayout.TxTailOffset, tail);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
        Assert.Equal(0UL, pair.Inbound.Received);
    }

    [Fact]
    public void TryReceive_TxTailGoesBackwards_Throws()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, [1]));
        Assert.True(pair.Outbound.TrySend(2, 0, TransactionFlags.Oneway, [2]));
        pair.ReceiveOne();
        pair.ReceiveOne();
        pair.WriteHeader(RegionHeaderLayout.TxTailOffset, 1UL);
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
    }

    private delegate void Spoil(ref TransactionRecordLayout record);

    private static (string What, Spoil Spoil)[] BadRecords(long dataSize) =>
    [
        ("offset beyond the data area", (ref r) => (r.BufferOffset, r.Length) = ((ulong)dataSize + 8, 0)),
        ("length runs past the end", (ref r) => (r.BufferOffset, r.Length) = ((ulong)dataSize - 8, 16)),
        ("offset + length overflows", (ref r) => (r.BufferOffset, r.Length) = (ulong.MaxValue - 7, 16)),
        ("huge length", (ref r) => (r.BufferOffset, r.Length) = (0, uint.MaxValue)),
        ("misaligned offset", (ref r) => r.BufferOffset = 3),
        ("no kind flag", (ref r) => r.Flags = 0),
        ("two kind flags", (ref r) => r.Flags = 3),
        ("unknown flag", (ref r) => r.Flags = 0x101),
        ("status on a oneway", (ref r) => r.Status = (uint)CallStatus.Internal),
        ("status on a call", (ref r) => (r.Flags, r.ChainId, r.Status) = ((uint)TransactionFlags.TwoWay, 5, 1)),
        ("status on a reply", (ref r) => (r.Flags, r.Status) = ((uint)TransactionFlags.Reply, 3)),
        ("status past the last", (ref r) => (r.Flags, r.Status) = ((uint)TransactionFlags.ErrorReply, 17)),
        ("chain on a oneway", (ref r) => r.ChainId = 1),
        ("depth on a reply", (ref r) => (r.Flags, r.Depth) = ((uint)TransactionFlags.Reply, 1)),
        ("depth past the protocol's", (ref r) => (r.Flags, r.ChainId, r.Depth) = ((uint)TransactionFlags.TwoWay, 5, TransactionRecordLayout.MaxDepth + 1)),
        ("metadata longer than the buffer", (ref r) => r.MetadataLength = 8),
        ("metadata not a multiple of 8", (ref r) => (r.Length, r.MetadataLength) = (16, 4)),
        ("metadata on a reply", (ref r) => (r.Flags, r.Length, r.MetadataLength) = ((uint)TransactionFlags.Reply, 16, 8)),
        ("metadata past the protocol's limit", (ref r) => (r.Length, r.MetadataLength) = (8192, CallMetadataBlock.MaxLength + 8)),
        ("reserved0 set", (ref r) => r.Reserved0 = 1),
        ("reserved1 set", (ref r) => r.Reserved1 = 1UL << 63),
    ];

    [Fact]
    public void TryReceive_InvalidRecord_ThrowsAndDoesNotConsumeIt()
    {
        foreach ((string what, Spoil spoil) in BadRecords(Options.Validate().DataSize))
        {
            using var pair = new ChannelPair(Options);
            Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, [1, 2, 3]));
            int slot = pair.Inbound.Layout.TxRingOffset;
            TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
            spoil(ref record);
            pair.WriteHeader(slot, record);

            ProtocolViolationException error = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.True(error.Message.Contains("invalid transaction record", StringComparison.Ordinal), what);
            Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Equal(0UL, pair.Inbound.Received);
        }
    }

    [Theory]
    [InlineData(TransactionFlags.ErrorReply, 0UL, 0U, CallStatus.Ok)]
    [InlineData(TransactionFlags.ErrorReply, 0UL, 0U, CallStatus.Unauthenticated)]
    [InlineData(TransactionFlags.TwoWay, 0x8000_0000_0000_0001UL, TransactionRecordLayout.MaxDepth, CallStatus.Ok)]
    [InlineData(TransactionFlags.TwoWay, 0UL, 0U, CallStatus.Ok)]
    public void TryReceive_StatusAndChainWhereTheyBelong_AreDelivered(TransactionFlags flags, ulong chain, uint depth, CallStatus status)
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, flags, [1, 2, 3], new RecordContext(chain, depth, status)));
        TransactionRecord record = pair.ReceiveOne();
        Assert.Equal(new ReceivedContext(chain, depth, status), record.Context);
        Assert.Equal(flags, record.Flags);
    }

    [Fact]
    public void TryReceive_RecordAtTheVeryEndOfTheDataArea_IsValid()
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.Oneway, [1]));
        long dataSize = pair.Inbound.Layout.DataSize;
        int slot = pair.Inbound.Layout.TxRingOffset;
        TransactionRecordLayout record = pair.ReadHeader<TransactionRecordLayout>(slot);
        record.BufferOffset = (ulong)dataSize - 8;
        record.Length = 8;
        pair.WriteHeader(slot, record);
        TransactionRecord received = pair.ReceiveOne();
        Assert.Equal(8, pair.Inbound.GetPayload(received).Length);
    }

    [Fact]
    public void GetPayload_ForgedRecordOutsideDataArea_ThrowsArgumentOutOfRange()
    {
        using var pair = new ChannelPair(Options);
        var forged = new TransactionRecord(1, pair.Inbound.Layout.DataSize - 4, 8, 0, TransactionFlags.Oneway);
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.Inbound.GetPayload(forged));
        Assert.Throws<ArgumentOutOfRangeException>(() => pair.Inbound.GetPayloadMemory(forged));
    }

    [Theory]
    [InlineData(0, 0x1234UL)]                                      // magic
    [InlineData(8, 1UL)]                                           // version 1: an older peer
    [InlineData(44, 8UL)]                                          // tx ring capacity differs from the announced one
    [InlineData(24, 0UL)]                                          // data offset
    [InlineData(RegionHeaderLayout.TxTailOffset, 1UL)]             // not a fresh ring
    [InlineData(RegionHeaderLayout.FreeHeadOffset, 3UL)]
    public void OutboundChannel_CorruptHeader_ThrowsAndDisposesTheRegion(int offset, ulong value)
    {
        using InboundChannel inbound = InboundChannel.Create("corrupt", Options);
        Span<byte> header = inbound.Region.GetSpan(0, RegionHeaderLayout.Size);
        if (offset is 8 or 44)
        {
            MemoryMarshal.Write(header[offset..], (uint)value);
        }
        else
        {
            MemoryMarshal.Write(header[offset..], value);
        }
        SharedRegion view = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, inbound.Region.Size);
        Assert.Throws<ProtocolViolationException>(() => new OutboundChannel(view, Options, new Shrinker()));
        Assert.Throws<ObjectDisposedException>(() => view.ResidentBytes);
    }

    [Fact]
    public void OutboundChannel_AnnouncedCapacityDiffers_Throws()
    {
        using InboundChannel inbound = InboundChannel.Create("corrupt", Options);
        SharedRegion view = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, inbound.Region.Size);
        var announced = new ChannelOptions { RegionSize = Options.RegionSize, TxRingCapacity = 8, FreeRingCapacity = 4 };
        Assert.Throws<ProtocolViolationException>(() => new OutboundChannel(view, announced, new Shrinker()));
    }

    [Theory]
    [InlineData(5UL)]
    [InlineData(ulong.MaxValue)]
    public void DrainFrees_FreeTailMoreThanARingAhead_Throws(ulong tail)
    {
        using var pair = new ChannelPair(Options);
        pair.WriteHeader(RegionHeaderLayout.FreeTailOffset, tail);
        Assert.Throws<ProtocolViolationException>(() => pair.Outbound.DrainFrees());
        // Sends read frees in batches: the bad tail is seen by the send that drains, at the latest once a batch is live.
        Assert.Throws<ProtocolViolationException>(() =>
        {
            for (int i = 0; i <= OutboundChannel.LazyDrainBuffers; i++)
            {
                pair.Outbound.TrySend((ulong)i, 0, TransactionFlags.Oneway, [1]);
            }
        });
    }

    [Theory]
    [InlineData(ulong.MaxValue)]  // outside the data area
    [InlineData(8UL)]             // inside, but no buffer starts there
    [InlineData(4096UL)]
    public void DrainFrees_FreeOfNoLiveBuffer_IsCountedAndIgnored(ulong offset)
    {
        using var pair = new ChannelPair(Options);
        Assert.True(pair.Outbound.TrySend(1, 0, TransactionFlags.TwoWay, new byte[16]));
        TransactionRecord record = pair.ReceiveOne();
        pair.Inbound.Free(record);
        // The peer rewrites the free it just published to name some other offset.
        int slot = pair.Inbound.Layout.FreeRingOffset;
        pair.WriteHeader(slot, new FreeRecordLayout { BufferOffset = offset, TransactionId = 1 });
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.IgnoredFrees);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void Free_FreeRingFullBecauseOfADoubleFree_Throws()
    {
        using var pair = new ChannelPair(Options);
        List<TransactionRecord> records = [];
        for (ulong id = 0; id < 4; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, [1]));
            records.Add(pair.ReceiveOne());
        }
        foreach (TransactionRecord record in records)
        {
            pair.Inbound.Free(record);
        }
        Assert.Throws<ProtocolViolationException>(() => pair.Inbound.Free(records[0]));
    }

    [Fact]
    public void DrainFrees_PeerFreedBuffersItHadNotReceived_IgnoresAndCountsThem()
    {
        using var pair = new ChannelPair(Options);
        for (ulong id = 0; id < 4; id++)
        {
            Assert.True(pair.Outbound.TrySend(id, 0, TransactionFlags.Oneway, [1]));
        }
        // A misbehaving receiver frees all four without taking them off the transaction ring: binder's delivery rule
        // ignores a free of a buffer that was not delivered, so none is given back and no slot is reused under it.
        for (int i = 0; i < 4; i++)
        {
            var raw = pair.ReadHeader<TransactionRecordLayout>(pair.Inbound.Layout.TxRingOffset + (i * TransactionRecordLayout.Size));
            pair.Inbound.Free(new TransactionRecord(raw.TransactionId, (long)raw.BufferOffset, (int)raw.Length, raw.Code, TransactionFlags.Oneway));
        }
        Assert.False(pair.Outbound.TrySend(9, 0, TransactionFlags.Oneway, [1]));
        Assert.Equal(4, pair.Outbound.UndeliveredFrees);
        Assert.Equal(4, pair.Outbound.IgnoredFrees);
        Assert.Equal(4, pair.Outbound.LiveBuffers);

        // Received now, and freed again: those frees count.
        for (int i = 0; i < 4; i++)
        {
            pair.Inbound.Free(pair.ReceiveOne());
        }
        Assert.True(pair.Outbound.TrySend(9, 0, TransactionFlags.Oneway, [1]));
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }
}
