using System.Runtime.InteropServices;

namespace PageRange.Transport;

/// <summary>
/// A pack: one buffer of the data area that a stream of small oneway messages is appended to, published by one ring
/// record and freed by one free record (issue 12: small messages share one buffer when they come faster than one
/// record each can carry).
/// </summary>
/// <remarks>
/// <code>
/// pack buffer (BufferOffset of its record, Length = capacity; written only by the writer):
///   0 Committed u32   bytes of entries written so far (a multiple of 8); top bit = Sealed: no more entries will come
///   4                 zero
///   8 NextPack u64    a hint, written before the seal of a pack that a stream filled: the offset of the pack the writer
///                     opens next (its first entry already written) with the low bit set (<see cref="NextPackHint"/>),
///                     else zero (another seal, or no room for a next pack); the receiver only prefetches there
///  16 FirstId u64     the transaction id of entry 0, written before the pack's record is published
///  24 .. 63           zero (the header has its own line: the writer stores Committed once per entry)
///  64 entry 0: 0 Length u16 | 2 Form u16 | 4 Code u32 | then by Form:
///       Form 0 (short): 8 payload; the id is FirstId + index * IdStep(FirstId) (index: the entry's place, from 0)
///       Form 1 (long):  8 TransactionId u64 | 16 payload
///     each padded to 8 bytes
///     entry 1 ...     up to 64 + Committed
///
/// pack record (transaction ring): Flags = Oneway | <see cref="RecordFlag"/>, BufferOffset = the pack (8-aligned),
///   Length = its capacity (<see cref="MinCapacity"/>..<see cref="MaxCapacity"/>, a multiple of 8), every other field zero.
/// </code>
/// The writer writes the first entry and its Committed before it publishes the pack's record (a pack is never empty);
/// it appends an entry, then release-stores Committed; it seals the pack (stores Committed | Sealed) before it
/// publishes any later record, so the receiver, which takes entries in order and moves on to the ring only once the
/// pack is sealed and consumed, keeps the order of every message. The receiver loads Committed once per look into a
/// local and validates it (an entry at least, within the capacity, a multiple of 8, never below what it saw, never
/// changing once sealed),
/// and copies each entry header once before using it (Length at most <see cref="MaxPayload"/>, Form 0 or 1, the entry
/// inside Committed). A stream's oneway ids follow each other (<see cref="IdStep"/>), so its entries are short: 72
/// bytes for a 64-byte payload instead of 80 (protocol version 10; see <see cref="EntryHeaderSize"/>). The pack's one
/// free goes back once the pack is sealed and consumed and every message taken from it was freed.
/// </remarks>
internal static class PackLayout
{
    /// <summary>The wire-only flag bit that marks a oneway record as a pack's; never a <see cref="TransactionFlags"/> member.</summary>
    internal const uint RecordFlag = 1u << 31;

    /// <summary>The header line before the first entry.</summary>
    internal const int HeaderSize = 64;

    /// <summary>
    /// Where the header holds the NextPack hint (see the layout above): a sealed pack names the next one, so the receiver
    /// that sees the seal asks for the next pack's first lines at once, beside the ring's tail and the record it reads
    /// next, instead of one after the other.
    /// </summary>
    /// <remarks>
    /// Only ever an address to prefetch: never validated as a record is, never read through, so a forged one costs the
    /// receiver nothing but a wasted fetch (a prefetch never faults, and the receiver clamps it into the data area).
    /// The pack that follows is still published by its record, which the receiver validates as before.
    /// </remarks>
    internal const int NextPackHintOffset = 8;

    /// <summary>
    /// The NextPack hint for a pack at <paramref name="offset"/>: the offset with its low bit set (packs are 8-aligned), so
    /// a pack at offset 0 is named too and zero stays "none".
    /// </summary>
    internal static ulong NextPackHint(long offset) => (ulong)offset | 1;

    /// <summary>
    /// The bytes of the next pack the receiver prefetches from the hint, three lines: the header and the first entry's
    /// (two lines for a payload of up to 112 bytes; a larger one's rest comes when it is read).
    /// </summary>
    internal const int NextPackPrefetchBytes = 192;

    /// <summary>Length, form and code before a short entry's payload.</summary>
    /// <remarks>
    /// 8 bytes, not the 16 of protocol version 9, whose entries all carried their id: a 64 B stream's message takes 72
    /// bytes (1.125 lines) instead of 80, and a pack holds 56 of them instead of 50. Far vCPUs on the EPYC guest: a scratch
    /// build with 8-byte headers against 16, medians 19.2-19.9 against 17.4-18.6 M messages/s, better in 8 of 14
    /// alternated pairs; this layout against 16-byte headers, 18.5 against 15.9 M, better in 5 of 8 (session 2026-12-05
    /// 16:00, benchmarks/README.md "Short entry headers").
    /// </remarks>
    internal const int EntryHeaderSize = 8;

    /// <summary>Length, form, code and id before a long entry's payload.</summary>
    internal const int LongEntryHeaderSize = 16;

    /// <summary>An entry whose id follows from the pack's FirstId and its index (see the layout).</summary>
    internal const ushort ShortForm = 0;

    /// <summary>An entry that carries its id.</summary>
    internal const ushort LongForm = 1;

    /// <summary>Where the header holds the id of the pack's first entry.</summary>
    internal const int FirstIdOffset = 16;

    /// <summary>
    /// The step between the ids of a pack's short entries, from its FirstId: a oneway id's
    /// (<see cref="TransactionIds.Oneway"/>, every index bit set) steps by one sequence, 2^16; any other id by one. So a stream whose ids the channel gives
    /// (<see cref="TransactionIds.AssignedOnSend"/>), or a sender that counts its own, writes only short entries; any
    /// other id goes in a long entry.
    /// </summary>
    internal static ulong IdStep(ulong firstId) =>
        (firstId & TransactionIds.PendingCallIndexMask) == TransactionIds.PendingCallIndexMask
            ? 1UL << TransactionIds.PendingCallIndexBits
            : 1;

    /// <summary>Set in Committed once the writer will append nothing more.</summary>
    internal const uint SealedBit = 1u << 31;

    /// <summary>The bytes of entries in Committed.</summary>
    internal const uint CommittedMask = SealedBit - 1;

    /// <summary>The largest payload an entry may carry; larger oneways get a buffer each.</summary>
    /// <remarks>
    /// 1 KiB (protocol version 12; 256 bytes before): three 1 KiB messages share a 4 KiB pack, where each took a buffer, a
    /// record and a free of its own: a 1 KiB stream 11.9-13.4 M messages/s against 5.2-6.1 M with close vCPUs (AMD EPYC guest,
    /// 2026-12-06; benchmarks/README.md "Oneways of up to 1 KiB packed").
    /// </remarks>
    internal const int MaxPayload = 1024;

    /// <summary>The most entries one pack holds: the writer seals a pack at this many; more is a violation.</summary>
    internal const int MaxEntries = 64;

    /// <summary>
    /// The most packs a writer keeps live (open, or sealed and not yet freed back to it): with
    /// <see cref="MaxEntries"/>, the most packed messages a receiver can ever hold undelivered or unfreed from an honest
    /// writer. The receiver keeps that many slots, so it always takes a pack whole and reaches the records behind it: a
    /// call published after a pack is never held up by oneways a slow handler has not taken yet (binder routes calls
    /// past a node's queued oneways). With the packs used up, a small oneway waits briefly for the receiver to free one
    /// (<see cref="ChannelOptions.PackWait"/>, with the send lock released between looks), then goes as a record of its own.
    /// A writer keeps fewer when its oneway quota is small (<see cref="LivePacksFor"/>).
    /// </summary>
    /// <remarks>
    /// 16, not the 4 of protocol version 4: a stream's writer at its limit waits for a pack to come back, and a pack
    /// comes back only after the receiver took it whole and freed its messages, so with 4 the writer ran at most a few
    /// packs ahead and waited for one in 77-85% of the packs it opened; with 16, in 42%. A 64 B oneway stream measured
    /// 15.2-19.2 M messages/s with 4 and 17.9-21.8 M with 16 in alternated runs (32: no better again); see
    /// benchmarks/README.md, "More packs live" (session 2026-12-04 12:08).
    /// </remarks>
    internal const int MaxLivePacks = 16;

    /// <summary>
    /// The most packs a writer keeps after their free, before it gives them back to its allocator (see
    /// <see cref="RestingPacksFor"/>): with <see cref="MaxLivePacks"/>, a stream's packs rotate through 64 buffers (256 KiB),
    /// where that many rest (<see cref="RestingPacksOnThisMachine"/>).
    /// </summary>
    internal const int MaxRestingPacks = 48;

    /// <summary>The packs that rest on an AMD processor (<see cref="RestingPacksOnThisMachine"/>).</summary>
    internal const int FewRestingPacks = 4;

    /// <summary>
    /// The packs a writer with <paramref name="onewayQuota"/> bytes of oneway quota and <paramref name="livePacks"/>
    /// live packs keeps resting at most: what is left of a quarter of the quota, at most <paramref name="mostResting"/>
    /// (<see cref="RestingPacksOnThisMachine"/> unless the channel's option says otherwise).
    /// </summary>
    /// <remarks>
    /// <para id="resting">Resting: a pack that a stream filled (sealed because the next message had no room in it, not
    /// by a record of another kind or an idle writer's seal) stays reserved once the receiver freed it. While the rest
    /// is full, but for the packs opened since the writer last read its frees (it reads them at every 4th pack, see
    /// <see cref="OutboundChannel.LazyDrainPacks"/>), the writer opens its next pack in the oldest resting one (recycled:
    /// no reservation, no free, no page changing state), so a stream rotates through its live and resting packs; a pack
    /// freed while the rest is full sends the oldest back to the allocator, and a rest below that grows from new
    /// reservations. Without the rest, the allocator's best fit hands a
    /// stream the pack freed last, whose lines are still in the other core's cache: on the Xeon guest a 64 B stream then
    /// ran as the floor does with a ring of 64 KiB (17-22 M messages/s), not as with its usual 8 MiB ring (14-47 M, median
    /// 25); with 48 resting 25.3-27.3 M against 19.9-23.3 M in 4 alternated pairs (session 2026-12-04 12:08,
    /// benchmarks/README.md "Packs that rest").</para>
    /// A resting pack is freed as far as the protocol goes (the receiver gave it back, the free ring holds nothing for
    /// it) but stays reserved in the region: its pages stay Used, which costs a streaming connection at most 192 KiB
    /// more resident memory. They go back when the region has no room for a reservation, and when the writer is idle.
    /// </remarks>
    internal static int RestingPacksFor(long onewayQuota, int livePacks, int mostResting = MaxRestingPacks) =>
        livePacks == 0 ? 0 : (int)Math.Clamp(onewayQuota / (4L * Capacity) - livePacks, 0, Math.Clamp(mostResting, 0, MaxRestingPacks));

    /// <summary>
    /// The most packs a stream's writer keeps resting on this machine (<see cref="RestingPacksFor"/>): a few on AMD
    /// processors (<see cref="FewRestingPacks"/>), <see cref="MaxRestingPacks"/> on every other.
    /// </summary>
    /// <remarks>
    /// The two machines at hand disagree on how far apart a buffer's uses should be. The Xeon model 207 guest: a 64 B
    /// stream's medians 23.4 and 26.1 M messages/s with 48 resting against 16.7 and 22.5 M without (+16-40%; session
    /// 2026-12-04 12:08). The AMD EPYC guest (family 26): 15.5-18.9 M without against 13.8-15.2 M with 48 resting in 6
    /// alternated pairs (session 2026-12-05 11:08). What differs is the reuse distance, counted per pack opened (session
    /// 2026-12-05 13:29, benchmarks/README.md "Recycled packs"): without the rest 98% of the EPYC's packs reused the buffer
    /// freed 17 packs before (best fit hands back the one freed last), with 48 resting 33-64 before, and a stream placed
    /// in turn through the whole 8 MiB region (reused 1,025-4,096 packs later) ran at 14.6-16.7 M against 16.9-19.0 M.
    /// So the EPYC wants a buffer back soon, the Xeon later. With <see cref="FewRestingPacks"/> and recycling, the EPYC's
    /// stream against main (no rest): medians 17.5 and 17.7 M against 16.9 and 17.1 M in 9 alternated far pairs, better
    /// in 7; its turnover (a new pack's reservation, the seal, the publish) 630-655 ns against 835-947. Not measured: other AMD
    /// generations, Hygon (which reports its own vendor and gets <see cref="MaxRestingPacks"/>), ARM64 (no CPUID here:
    /// <see cref="MaxRestingPacks"/>). An emulator reports the vendor of the processor it models. Speed only: either way
    /// every message arrives.
    /// </remarks>
    internal static int RestingPacksOnThisMachine { get; } = IsAmdProcessor() ? FewRestingPacks : MaxRestingPacks;

    private static bool IsAmdProcessor()
    {
        if (!System.Runtime.Intrinsics.X86.X86Base.IsSupported)
        {
            return false;
        }
        // CPUID leaf 0: the vendor string in EBX, EDX, ECX ("Auth" "enti" "cAMD").
        (_, int ebx, int ecx, int edx) = System.Runtime.Intrinsics.X86.X86Base.CpuId(0, 0);
        return ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163;
    }

    /// <summary>The fewest packs a writer that packs at all keeps live: a region whose oneway quota holds fewer does not pack.</summary>
    internal const int MinLivePacks = 4;

    /// <summary>
    /// The packs a writer with <paramref name="onewayQuota"/> bytes of oneway quota keeps live at most: a quarter of the
    /// quota in packs, between <see cref="MinLivePacks"/> (0 below: no packing) and <see cref="MaxLivePacks"/>. Beyond the
    /// four every packing writer had before, a stream's packs take at most a quarter of the quota from the oneways that
    /// need a buffer of their own (the four alone may take more of a small region's quota, up to all of it, as before).
    /// </summary>
    internal static int LivePacksFor(long onewayQuota) =>
        onewayQuota < (long)MinLivePacks * Capacity ? 0 : (int)Math.Clamp(onewayQuota / (4L * Capacity), MinLivePacks, MaxLivePacks);

    /// <summary>The capacity the writer gives each pack (a page: its pages are backed once and reused).</summary>
    internal const int Capacity = 4096;

    /// <summary>The smallest capacity a receiver accepts: a header and one empty short entry.</summary>
    internal const int MinCapacity = HeaderSize + EntryHeaderSize;

    /// <summary>The largest capacity a receiver accepts.</summary>
    internal const int MaxCapacity = 64 << 10;

    /// <summary>The bytes an entry with <paramref name="payloadLength"/> bytes of payload takes, padded to 8.</summary>
    /// <param name="payloadLength">The payload's length.</param>
    /// <param name="longForm">Whether the entry carries its id (<see cref="LongForm"/>).</param>
    internal static int EntrySize(int payloadLength, bool longForm = false) =>
        ((longForm ? LongEntryHeaderSize : EntryHeaderSize) + payloadLength + 7) & ~7;
}

/// <summary>The header every entry in a pack starts with (see <see cref="PackLayout"/>); a long entry's id follows it.</summary>
[StructLayout(LayoutKind.Explicit, Size = PackLayout.EntryHeaderSize)]
internal struct PackEntryLayout
{
    /// <summary>The payload's length in bytes, at most <see cref="PackLayout.MaxPayload"/>.</summary>
    [FieldOffset(0)] public ushort Length;

    /// <summary><see cref="PackLayout.ShortForm"/> or <see cref="PackLayout.LongForm"/>.</summary>
    [FieldOffset(2)] public ushort Form;

    /// <summary>What the message asks for (binder's <c>code</c>).</summary>
    [FieldOffset(4)] public uint Code;
}
