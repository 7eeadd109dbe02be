using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>The first bytes of every region: what the receiver announces, and the words both sides race on.</summary>
/// <remarks>
/// <code>
///   0 Magic u64 | 8 Version u32 | 12 Flags u32 | 16 RegionSize u64 | 24 DataOffset u64 | 32 DataSize u64
///  40 TxRingOffset u32 | 44 TxRingCapacity u32 | 48 FreeRingOffset u32 | 52 FreeRingCapacity u32
///  56 TxRecordSize u32 | 60 FreeRecordSize u32
///  64 TxTail u64                (line 1: written by the writer, the transaction ring's producer)
/// 128 TxHead u64                (line 2: written by the receiver, its consumer)
/// 192 TxDoorbellSequence i32    (line 3: bumped by the writer to wake a parked receiver; the futex word)
/// 256 TxDoorbellParked i32      (line 4: receiver threads parked on the transaction ring)
/// 260 TxBarrierMode i32         (line 4: whether the receiver's readers issue the park barrier now; AdaptiveParkBarrierFlag)
/// 320 FreeTail u64              (line 5: written by the receiver, the free ring's producer)
/// 384 FreeHead u64              (line 6: written by the writer, its consumer)
/// 448 FreeDoorbellSequence i32  (line 7: bumped by the receiver to wake a parked writer; the futex word)
/// 512 FreeDoorbellParked i32    (line 8: writer threads parked on the free ring)
/// 576
/// </code>
/// The configuration (line 0) is written once by the receiver before the peer sees the region; each side copies it
/// to private memory once and never reads it again, so a peer that scribbles over it later changes nothing. Every
/// word both sides write sits on its own 64-byte line, so a producer's stores never bounce the consumer's line.
/// Ring indices are free-running 64-bit counters (they never wrap in practice); a slot is <c>index &amp; (capacity - 1)</c>.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = Size)]
internal struct RegionHeaderLayout
{
    /// <summary>The size of the header structure; the transaction ring starts right after it.</summary>
    internal const int Size = 576;

    /// <summary>"PGRANGE1" read as a little-endian u64: marks a region written by this library.</summary>
    internal const ulong ExpectedMagic = 0x3145474E41524750;

    /// <summary>
    /// The layout version this code reads and writes (5: the direct reply's and call's lines follow the header,
    /// <see cref="DirectReplyLayout"/>; 6: two payload lines each, the transaction ring at 960; 7: the readers' barrier
    /// mode, <see cref="TxBarrierMode"/>).
    /// </summary>
    internal const uint CurrentVersion = 7;

    /// <summary>
    /// <see cref="Flags"/>: the region owner's threads issue a <see cref="ParkBarrier"/> before every park on a doorbell:
    /// its readers on this region's transaction ring, so the writer may publish without a fence; its writer, waiting for
    /// room, on the free ring of the peer's region, so the peer may publish its frees without one (each side only if its
    /// own process is registered for the barrier). Protocol version 6: before it, the flag promised the readers' half only.
    /// </summary>
    internal const uint ParkBarrierFlag = 1;

    /// <summary>
    /// <see cref="Flags"/>: the region owner's readers decide park by park whether they issue a <see cref="ParkBarrier"/>,
    /// and say so in <see cref="TxBarrierMode"/>, which the writer reads after each publish: non-zero, it may ring
    /// without a fence (if its own process is registered for the barrier). A spin-then-park or park receiver's (see
    /// <see cref="Doorbell"/>'s remarks for the protocol, and <see cref="ChannelOptions.ParksWithAdaptiveBarrier"/>).
    /// </summary>
    internal const uint AdaptiveParkBarrierFlag = 2;

    /// <summary>Every <see cref="Flags"/> bit this version knows; any other set is a protocol violation.</summary>
    internal const uint KnownFlags = ParkBarrierFlag | AdaptiveParkBarrierFlag;

    internal const int TxTailOffset = 64;
    internal const int TxHeadOffset = 128;
    internal const int TxDoorbellSequenceOffset = 192;
    internal const int TxDoorbellParkedOffset = 256;
    internal const int TxBarrierModeOffset = 260;
    internal const int FreeTailOffset = 320;
    internal const int FreeHeadOffset = 384;
    internal const int FreeDoorbellSequenceOffset = 448;
    internal const int FreeDoorbellParkedOffset = 512;

    /// <summary><see cref="ExpectedMagic"/>.</summary>
    [FieldOffset(0)] public ulong Magic;

    /// <summary><see cref="CurrentVersion"/>.</summary>
    [FieldOffset(8)] public uint Version;

    /// <summary>What the region owner's side does, as bits: <see cref="ParkBarrierFlag"/>, <see cref="AdaptiveParkBarrierFlag"/>; no other bit is known.</summary>
    [FieldOffset(12)] public uint Flags;

    /// <summary>The region's size in bytes, as sealed into the memfd.</summary>
    [FieldOffset(16)] public ulong RegionSize;

    /// <summary>Where the data area starts: the header pages' size, a page multiple.</summary>
    [FieldOffset(24)] public ulong DataOffset;

    /// <summary>The data area's size: <see cref="RegionSize"/> - <see cref="DataOffset"/>.</summary>
    [FieldOffset(32)] public ulong DataSize;

    /// <summary>Where the transaction ring's records start.</summary>
    [FieldOffset(40)] public uint TxRingOffset;

    /// <summary>Transaction ring slots, a power of two.</summary>
    [FieldOffset(44)] public uint TxRingCapacity;

    /// <summary>Where the free ring's records start.</summary>
    [FieldOffset(48)] public uint FreeRingOffset;

    /// <summary>Free ring slots, a power of two.</summary>
    [FieldOffset(52)] public uint FreeRingCapacity;

    /// <summary><see cref="TransactionRecordLayout.Size"/>.</summary>
    [FieldOffset(56)] public uint TxRecordSize;

    /// <summary><see cref="FreeRecordLayout.Size"/>.</summary>
    [FieldOffset(60)] public uint FreeRecordSize;

    /// <summary>Transactions published so far (producer: the writer).</summary>
    [FieldOffset(TxTailOffset)] public ulong TxTail;

    /// <summary>Transactions consumed so far (consumer: the receiver).</summary>
    [FieldOffset(TxHeadOffset)] public ulong TxHead;

    /// <summary>The receiver's doorbell: the futex word the writer bumps.</summary>
    [FieldOffset(TxDoorbellSequenceOffset)] public int TxDoorbellSequence;

    /// <summary>How many receiver threads are parked (or about to park) on <see cref="TxDoorbellSequence"/>.</summary>
    [FieldOffset(TxDoorbellParkedOffset)] public int TxDoorbellParked;

    /// <summary>
    /// Under <see cref="AdaptiveParkBarrierFlag"/>: non-zero while the receiver's readers issue the park barrier before
    /// they park. Beside the parked count, which the writer loads after every publish anyway: the same line.
    /// </summary>
    [FieldOffset(TxBarrierModeOffset)] public int TxBarrierMode;

    /// <summary>Frees published so far (producer: the receiver).</summary>
    [FieldOffset(FreeTailOffset)] public ulong FreeTail;

    /// <summary>Frees consumed so far (consumer: the writer).</summary>
    [FieldOffset(FreeHeadOffset)] public ulong FreeHead;

    /// <summary>The writer's doorbell: the futex word the receiver bumps.</summary>
    [FieldOffset(FreeDoorbellSequenceOffset)] public int FreeDoorbellSequence;

    /// <summary>How many writer threads are parked (or about to park) on <see cref="FreeDoorbellSequence"/>.</summary>
    [FieldOffset(FreeDoorbellParkedOffset)] public int FreeDoorbellParked;
}
