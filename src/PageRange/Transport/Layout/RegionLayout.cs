using System.Numerics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>Where each part of a region lies: header, transaction ring, free ring, data area.</summary>
/// <remarks>
/// <code>
/// 0                 RegionHeaderLayout (576 bytes)
/// 576               DirectReplyLayout (192 bytes: a direct reply's record and payload lines)  writer -> receiver
/// 768               DirectCallLayout (192 bytes: a direct call's record and payload lines)    writer -> receiver
/// TxRingOffset      TxRingCapacity   x TransactionRecordLayout (64 bytes)   writer -> receiver
/// FreeRingOffset    FreeRingCapacity x FreeRecordLayout (16 bytes)          receiver -> writer
/// DataOffset        data area, page-aligned, to the end of the region
/// </code>
/// Both rings start on a 64-byte line; the header pages (everything before <see cref="DataOffset"/>) stay backed for
/// the life of the region, the data area is managed by a <see cref="ShrinkablePageRange"/>.
/// </remarks>
/// <param name="RegionSize">The whole region in bytes.</param>
/// <param name="TxRingCapacity">Transaction ring slots, a power of two.</param>
/// <param name="FreeRingCapacity">Free ring slots, a power of two.</param>
/// <param name="TxRingOffset">Byte offset of the transaction ring's first record.</param>
/// <param name="FreeRingOffset">Byte offset of the free ring's first record.</param>
/// <param name="DataOffset">Byte offset of the data area: the header pages' size, a page multiple.</param>
/// <param name="DataSize">The data area's size in bytes, at least one page.</param>
internal readonly record struct RegionLayout(
    long RegionSize, int TxRingCapacity, int FreeRingCapacity, int TxRingOffset, int FreeRingOffset, long DataOffset, long DataSize)
{
    /// <summary>The fewest slots a ring may have.</summary>
    internal const int MinRingCapacity = 1;

    /// <summary>The most slots a ring may have (2 MiB of transaction records).</summary>
    internal const int MaxRingCapacity = 1 << 16;

    private const int CacheLine = 64;

    /// <summary>Where every region's transaction ring starts: after the header and the direct reply's and call's lines (protocol version 8; 960 since version 9).</summary>
    private const int TxRingOffsetValue = DirectCallLayout.Offset + DirectCallLayout.Size;

    /// <summary>Header pages in bytes (the same as <see cref="DataOffset"/>).</summary>
    internal long HeaderBytes => DataOffset;

    /// <summary>
    /// The number of buffers (and inline transactions) a writer may have live at once: no more than either ring holds,
    /// so a receiver's free always finds a slot and a commit always finds a transaction slot, and on a transaction ring
    /// of <see cref="MinInlineRing"/> slots or more an eighth of it less (<see cref="InlineSurplus"/>).
    /// </summary>
    internal int MaxLiveBuffers => Math.Min(TxRingCapacity - InlineSurplus, FreeRingCapacity);

    /// <summary>
    /// The transaction ring's slots kept beyond the live limit for the payloads carried inline (see
    /// <see cref="InlineLayout"/>): an eighth of a ring of <see cref="MinInlineRing"/> slots or more (128 of the default
    /// 1,024; 8 of 64), none on a smaller one. Protocol version 7: before it the live limit was the smaller ring's capacity.
    /// </summary>
    internal int InlineSurplus => TxRingCapacity >= MinInlineRing ? TxRingCapacity / 8 : 0;

    /// <summary>The smallest transaction ring that keeps slots for inline payloads (<see cref="InlineSurplus"/>).</summary>
    internal const int MinInlineRing = 64;

    /// <summary>
    /// The header pages' size, in bytes, of a region whose rings hold <paramref name="txRingCapacity"/> and
    /// <paramref name="freeRingCapacity"/> records: a region must be larger by at least one page (its data area).
    /// </summary>
    internal static long HeaderBytesFor(int txRingCapacity, int freeRingCapacity) =>
        AlignUp(FreeRingOffsetFor(txRingCapacity) + (freeRingCapacity * FreeRecordLayout.Size), SharedRegion.PageSize);

    private static int FreeRingOffsetFor(int txRingCapacity) =>
        AlignUp(TxRingOffsetValue + (txRingCapacity * TransactionRecordLayout.Size), CacheLine);

    /// <summary>Lays out a region of <paramref name="regionSize"/> bytes with rings of the given capacities.</summary>
    /// <exception cref="ArgumentException">A size is not page-aligned or out of range, a capacity is not a power of
    /// two in [<see cref="MinRingCapacity"/>, <see cref="MaxRingCapacity"/>], or no data page is left.</exception>
    internal static RegionLayout Compute(long regionSize, int txRingCapacity, int freeRingCapacity)
    {
        int pageSize = SharedRegion.PageSize;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(regionSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(regionSize, SharedRegion.DefaultMaxSize);
        if (regionSize % pageSize != 0)
        {
            throw new ArgumentException($"A region's size must be a multiple of the page size ({pageSize}); {regionSize} is not.", nameof(regionSize));
        }
        ValidateCapacity(txRingCapacity, nameof(txRingCapacity));
        ValidateCapacity(freeRingCapacity, nameof(freeRingCapacity));

        int txRingOffset = TxRingOffsetValue;
        int freeRingOffset = FreeRingOffsetFor(txRingCapacity);
        long dataOffset = HeaderBytesFor(txRingCapacity, freeRingCapacity);
        if (dataOffset >= regionSize)
        {
            throw new ArgumentException(
                $"A region of {regionSize} bytes leaves no data page after {dataOffset} header bytes; make it larger or the rings smaller.",
                nameof(regionSize));
        }
        return new RegionLayout(regionSize, txRingCapacity, freeRingCapacity, txRingOffset, freeRingOffset, dataOffset, regionSize - dataOffset);
    }

    /// <summary>The header a receiver writes for this layout, with every ring index and doorbell word zero.</summary>
    /// <param name="flags">The header's <see cref="RegionHeaderLayout.Flags"/>.</param>
    internal RegionHeaderLayout ToHeader(uint flags = 0) => new()
    {
        Magic = RegionHeaderLayout.ExpectedMagic,
        Version = RegionHeaderLayout.CurrentVersion,
        Flags = flags,
        RegionSize = (ulong)RegionSize,
        DataOffset = (ulong)DataOffset,
        DataSize = (ulong)DataSize,
        TxRingOffset = (uint)TxRingOffset,
        TxRingCapacity = (uint)TxRingCapacity,
        FreeRingOffset = (uint)FreeRingOffset,
        FreeRingCapacity = (uint)FreeRingCapacity,
        TxRecordSize = TransactionRecordLayout.Size,
        FreeRecordSize = FreeRecordLayout.Size,
    };

    /// <summary>
    /// Checks a header the peer wrote against the layout it announced: every configuration field must be exactly what
    /// <see cref="Compute"/> gives for that size and those capacities.
    /// </summary>
    /// <param name="header">A private copy of the header, taken once.</param>
    /// <param name="regionSize">The size of the mapping (already checked against the announced size).</param>
    /// <param name="txRingCapacity">The announced transaction ring capacity.</param>
    /// <param name="freeRingCapacity">The announced free ring capacity.</param>
    /// <returns>The layout to use from now on, never re-read from shared memory.</returns>
    /// <exception cref="ProtocolViolationException">A field differs, or the announced values are impossible.</exception>
    internal static RegionLayout Validate(in RegionHeaderLayout header, long regionSize, int txRingCapacity, int freeRingCapacity)
    {
        if (header.Magic != RegionHeaderLayout.ExpectedMagic)
        {
            throw new ProtocolViolationException($"The peer's region does not start with the PageRange magic (found 0x{header.Magic:x16}).");
        }
        if (header.Version != RegionHeaderLayout.CurrentVersion)
        {
            throw new ProtocolViolationException(
                $"The peer's region has layout version {header.Version}; this side reads version {RegionHeaderLayout.CurrentVersion}.");
        }

        RegionLayout expected;
        try
        {
            expected = Compute(regionSize, txRingCapacity, freeRingCapacity);
        }
        catch (ArgumentException e)
        {
            throw new ProtocolViolationException($"The peer announced an impossible region layout: {e.Message}", e);
        }

        RegionHeaderLayout want = expected.ToHeader();
        if ((header.Flags & ~RegionHeaderLayout.KnownFlags) != 0
            || header.RegionSize != want.RegionSize
            || header.DataOffset != want.DataOffset
            || header.DataSize != want.DataSize
            || header.TxRingOffset != want.TxRingOffset
            || header.TxRingCapacity != want.TxRingCapacity
            || header.FreeRingOffset != want.FreeRingOffset
            || header.FreeRingCapacity != want.FreeRingCapacity
            || header.TxRecordSize != want.TxRecordSize
            || header.FreeRecordSize != want.FreeRecordSize)
        {
            throw new ProtocolViolationException(
                $"The peer's region header does not match what it announced: region {header.RegionSize} (expected {want.RegionSize}), " +
                $"data at {header.DataOffset}+{header.DataSize} (expected {want.DataOffset}+{want.DataSize}), " +
                $"tx ring {header.TxRingCapacity}x{header.TxRecordSize} at {header.TxRingOffset} (expected {want.TxRingCapacity}x{want.TxRecordSize} at {want.TxRingOffset}), " +
                $"free ring {header.FreeRingCapacity}x{header.FreeRecordSize} at {header.FreeRingOffset} (expected {want.FreeRingCapacity}x{want.FreeRecordSize} at {want.FreeRingOffset}), " +
                $"flags 0x{header.Flags:x} (known: 0x{RegionHeaderLayout.KnownFlags:x}).");
        }
        return expected;
    }

    private static void ValidateCapacity(int capacity, string name)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, MinRingCapacity, name);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, MaxRingCapacity, name);
        if (!BitOperations.IsPow2(capacity))
        {
            throw new ArgumentException($"A ring's capacity must be a power of two; {capacity} is not.", name);
        }
    }

    private static int AlignUp(int value, int alignment) => (value + alignment - 1) & ~(alignment - 1);

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) & ~(alignment - 1);
}
