using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

public sealed class RegionLayoutTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void RegionHeaderLayout_SizeAndOffsets_ArePinned()
    {
        Assert.Equal(576, Unsafe.SizeOf<RegionHeaderLayout>());
        Assert.Equal(RegionHeaderLayout.Size, Unsafe.SizeOf<RegionHeaderLayout>());
        (string Field, int Offset)[] expected =
        [
            (nameof(RegionHeaderLayout.Magic), 0),
            (nameof(RegionHeaderLayout.Version), 8),
            (nameof(RegionHeaderLayout.Flags), 12),
            (nameof(RegionHeaderLayout.RegionSize), 16),
            (nameof(RegionHeaderLayout.DataOffset), 24),
            (nameof(RegionHeaderLayout.DataSize), 32),
            (nameof(RegionHeaderLayout.TxRingOffset), 40),
            (nameof(RegionHeaderLayout.TxRingCapacity), 44),
            (nameof(RegionHeaderLayout.FreeRingOffset), 48),
            (nameof(RegionHeaderLayout.FreeRingCapacity), 52),
            (nameof(RegionHeaderLayout.TxRecordSize), 56),
            (nameof(RegionHeaderLayout.FreeRecordSize), 60),
            (nameof(RegionHeaderLayout.TxTail), 64),
            (nameof(RegionHeaderLayout.TxHead), 128),
            (nameof(RegionHeaderLayout.TxDoorbellSequence), 192),
            (nameof(RegionHeaderLayout.TxDoorbellParked), 256),
            (nameof(RegionHeaderLayout.FreeTail), 320),
            (nameof(RegionHeaderLayout.FreeHead), 384),
            (nameof(RegionHeaderLayout.FreeDoorbellSequence), 448),
            (nameof(RegionHeaderLayout.FreeDoorbellParked), 512),
        ];
        foreach ((string field, int offset) in expected)
        {
            Assert.True(offset == (int)Marshal.OffsetOf<RegionHeaderLayout>(field), $"{field} is not at {offset}");
        }
        Assert.Equal(RegionHeaderLayout.TxTailOffset, (int)Marshal.OffsetOf<RegionHeaderLayout>(nameof(RegionHeaderLayout.TxTail)));
        Assert.Equal(RegionHeaderLayout.FreeDoorbellParkedOffset, (int)Marshal.OffsetOf<RegionHeaderLayout>(nameof(RegionHeaderLayout.FreeDoorbellParked)));
    }

    [Fact]
    public void RegionHeaderLayout_SharedWords_EachOnTheirOwnCacheLine()
    {
        int[] words =
        [
            RegionHeaderLayout.TxTailOffset, RegionHeaderLayout.TxHeadOffset,
            RegionHeaderLayout.TxDoorbellSequenceOffset, RegionHeaderLayout.TxDoorbellParkedOffset,
            RegionHeaderLayout.FreeTailOffset, RegionHeaderLayout.FreeHeadOffset,
            RegionHeaderLayout.FreeDoorbellSequenceOffset, RegionHeaderLayout.FreeDoorbellParkedOffset,
        ];
        int[] lines = words.Select(offset => offset / 64).ToArray();
        Assert.Equal(words.Length, lines.Distinct().Count());
        Assert.DoesNotContain(0, lines); // line 0 is the configuration, written once
        Assert.Equal(0, RegionHeaderLayout.Size % 64);
    }

    [Fact]
    public void RegionHeaderLayout_Magic_SpellsPGRANGE1()
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong magic = RegionHeaderLayout.ExpectedMagic;
        MemoryMarshal.Write(bytes, in magic);
        Assert.Equal("PGRANGE1", System.Text.Encoding.ASCII.GetString(bytes));
    }

    [Fact]
    public void TransactionRecordLayout_SizeAndOffsets_ArePinned()
    {
        Assert.Equal(64, Unsafe.SizeOf<TransactionRecordLayout>());
        Assert.Equal(TransactionRecordLayout.Size, Unsafe.SizeOf<TransactionRecordLayout>());
        Assert.Equal(0, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.TransactionId)));
        Assert.Equal(8, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.BufferOffset)));
        Assert.Equal(16, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Length)));
        Assert.Equal(20, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Code)));
        Assert.Equal(24, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Flags)));
        Assert.Equal(28, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Status)));
        Assert.Equal(32, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.ChainId)));
        Assert.Equal(40, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Depth)));
        Assert.Equal(44, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.MetadataLength)));
        Assert.Equal(48, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Reserved0)));
        Assert.Equal(56, (int)Marshal.OffsetOf<TransactionRecordLayout>(nameof(TransactionRecordLayout.Reserved1)));
    }

    [Fact]
    public void FreeRecordLayout_SizeAndOffsets_ArePinned()
    {
        Assert.Equal(16, Unsafe.SizeOf<FreeRecordLayout>());
        Assert.Equal(FreeRecordLayout.Size, Unsafe.SizeOf<FreeRecordLayout>());
        Assert.Equal(0, (int)Marshal.OffsetOf<FreeRecordLayout>(nameof(FreeRecordLayout.BufferOffset)));
        Assert.Equal(8, (int)Marshal.OffsetOf<FreeRecordLayout>(nameof(FreeRecordLayout.TransactionId)));
    }

    [Fact]
    public void TransactionFlags_Values_ArePinned()
    {
        Assert.Equal(1u, (uint)TransactionFlags.Oneway);
        Assert.Equal(2u, (uint)TransactionFlags.TwoWay);
        Assert.Equal(4u, (uint)TransactionFlags.Reply);
        Assert.Equal(8u, (uint)TransactionFlags.ErrorReply);
        Assert.Equal(16u, (uint)TransactionFlags.ClearOnFree);
        Assert.Equal(32u, (uint)TransactionFlags.Cancel);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway, true)]
    [InlineData(TransactionFlags.TwoWay | TransactionFlags.ClearOnFree, true)]
    [InlineData(TransactionFlags.Reply, true)]
    [InlineData(TransactionFlags.ErrorReply | TransactionFlags.Cancel, true)]
    [InlineData(TransactionFlags.None, false)]
    [InlineData(TransactionFlags.ClearOnFree, false)]
    [InlineData(TransactionFlags.Oneway | TransactionFlags.TwoWay, false)]
    [InlineData(TransactionFlags.Reply | TransactionFlags.ErrorReply, false)]
    [InlineData((TransactionFlags)0x41, false)]
    [InlineData((TransactionFlags)0x80000001, false)]
    public void TransactionFlags_IsValid_ExactlyOneKindAndNoUnknownBit(TransactionFlags flags, bool valid) =>
        Assert.Equal(valid, flags.IsValid());

    [Fact]
    public void Compute_Defaults_LaysOutRingsThenPageAlignedData()
    {
        RegionLayout layout = RegionLayout.Compute(4L << 20, 1024, 1024);
        // The header (576 bytes), then the direct reply's and the direct call's lines, a record line and two payload lines
        // each (protocol version 9), then the rings.
        Assert.Equal(576, DirectReplyLayout.Offset);
        Assert.Equal(576 + 192, DirectCallLayout.Offset);
        Assert.Equal(576 + 384, layout.TxRingOffset);
        Assert.Equal(576 + 384 + (1024 * 64), layout.FreeRingOffset);
        long headerEnd = layout.FreeRingOffset + (1024 * 16);
        Assert.Equal((headerEnd + s_page - 1) / s_page * s_page, layout.DataOffset);
        Assert.Equal(layout.DataOffset, layout.HeaderBytes);
        Assert.Equal((4L << 20) - layout.DataOffset, layout.DataSize);
        // An eighth of the transaction ring is kept for payloads carried inline (protocol version 7).
        Assert.Equal(128, layout.InlineSurplus);
        Assert.Equal(1024 - 128, layout.MaxLiveBuffers);
    }

    [Fact]
    public void Compute_SmallRings_FitInOnePageAndRingsStartOnCacheLines()
    {
        RegionLayout layout = RegionLayout.Compute(4L * s_page, 4, 2);
        Assert.Equal(s_page, layout.DataOffset);
        Assert.Equal(3L * s_page, layout.DataSize);
        Assert.Equal(0, layout.TxRingOffset % 64);
        Assert.Equal(0, layout.FreeRingOffset % 64);
        Assert.Equal(2, layout.MaxLiveBuffers);
        Assert.Equal(0, layout.InlineSurplus);
    }

    [Theory]
    [InlineData(0L, 4, 4)]
    [InlineData(-4096L, 4, 4)]
    [InlineData(4097L, 4, 4)]
    [InlineData(4096L, 4, 4)]             // no data page left
    [InlineData(8192L, 0, 4)]
    [InlineData(8192L, 3, 4)]
    [InlineData(8192L, 4, 6)]
    [InlineData(8192L, 1 << 17, 4)]
    [InlineData((1L << 30) + 4096, 4, 4)]
    public void Compute_BadArguments_ThrowArgumentException(long regionSize, int tx, int free) =>
        Assert.ThrowsAny<ArgumentException>(() => RegionLayout.Compute(regionSize, tx, free));

    [Fact]
    public void Validate_HeaderWrittenByCompute_ReturnsTheLayout()
    {
        RegionLayout layout = RegionLayout.Compute(64L * s_page, 256, 128);
        RegionHeaderLayout header = layout.ToHeader();
        Assert.Equal(layout, RegionLayout.Validate(header, layout.RegionSize, 256, 128));
    }

    public static TheoryData<string> CorruptFields =>
        ["Magic", "Version", "Flags", "RegionSize", "DataOffset", "DataSize", "TxRingOffset", "TxRingCapacity",
         "FreeRingOffset", "FreeRingCapacity", "TxRecordSize", "FreeRecordSize"];

    [Theory]
    [MemberData(nameof(CorruptFields))]
    public void Validate_AnyConfigurationFieldChanged_ThrowsProtocolViolation(string field)
    {
        RegionLayout layout = RegionLayout.Compute(64L * s_page, 256, 128);
        RegionHeaderLayout header = layout.ToHeader();
        Span<byte> bytes = MemoryMarshal.AsBytes(new Span<RegionHeaderLayout>(ref header));
        bytes[(int)Marshal.OffsetOf<RegionHeaderLayout>(field)] ^= 0x10;
        Assert.Throws<ProtocolViolationException>(() => RegionLayout.Validate(header, layout.RegionSize, 256, 128));
    }

    [Fact]
    public void Validate_TheParkBarrierFlag_IsAKnownFlag()
    {
        RegionLayout layout = RegionLayout.Compute(64L * s_page, 256, 128);
        RegionHeaderLayout header = layout.ToHeader(RegionHeaderLayout.ParkBarrierFlag);
        Assert.Equal(layout, RegionLayout.Validate(header, layout.RegionSize, 256, 128));
    }

    [Fact]
    public void Validate_AnnouncedValuesDifferFromHeader_ThrowsProtocolViolation()
    {
        RegionLayout layout = RegionLayout.Compute(64L * s_page, 256, 128);
        RegionHeaderLayout header = layout.ToHeader();
        Assert.Throws<ProtocolViolationException>(() => RegionLayout.Validate(header, 128L * s_page, 256, 128));
        Assert.Throws<ProtocolViolationException>(() => RegionLayout.Validate(header, layout.RegionSize, 512, 128));
        Assert.Throws<ProtocolViolationException>(() => RegionLayout.Validate(header, layout.RegionSize, 256, 3));
    }
}
