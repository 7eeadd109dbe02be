using PageRange.Memory;

namespace PageRange.Allocation;

/// <summary>A snapshot of a <see cref="BufferAllocator"/>: binder's proc stats and its allocated/free summary.</summary>
/// <param name="Mode">Empty, Array or Tree.</param>
/// <param name="DataSize">Bytes in the data area.</param>
/// <param name="BufferCount">Live buffers: reserved, allocated or being freed (binder's <c>buffers:</c>).</param>
/// <param name="ReservedBuffers">Buffers the writer owns (reserved or being freed).</param>
/// <param name="AllocatedBuffers">Buffers delivered to the receiver.</param>
/// <param name="BufferBytes">Padded bytes of the live buffers (binder's <c>allocated: T</c>).</param>
/// <param name="LargestBuffer">The largest live buffer.</param>
/// <param name="FreeBytes">Bytes in free ranges.</param>
/// <param name="FreeRanges">How many free ranges; never two adjacent.</param>
/// <param name="LargestFreeRange">The largest free range: the largest reservation that would succeed now.</param>
/// <param name="FreeOnewaySpace">The oneway quota left (binder's <c>free oneway space</c>).</param>
/// <param name="OnewayBuffers">Live oneway buffers.</param>
/// <param name="IgnoredFrees">Frees of unknown, undelivered or already freed offsets, ignored.</param>
/// <param name="FailedReservations">Reservations that found no room (binder's ENOSPC), oneway quota included.</param>
/// <param name="OnewaySpamReports">Oneway-spam suspects reported.</param>
/// <param name="Pages">The page range's counts: <c>pages: used:available:free</c> and the high-water mark.</param>
internal readonly record struct BufferAllocatorStats(
    AllocatorMode Mode,
    long DataSize,
    int BufferCount,
    int ReservedBuffers,
    int AllocatedBuffers,
    long BufferBytes,
    long LargestBuffer,
    long FreeBytes,
    int FreeRanges,
    long LargestFreeRange,
    long FreeOnewaySpace,
    int OnewayBuffers,
    long IgnoredFrees,
    long FailedReservations,
    long OnewaySpamReports,
    PageRangeStats Pages)
{
    /// <summary>Binder's summary line after ENOSPC: <c>allocated: T (num: N largest: L), free: T (num: N largest: L)</c>.</summary>
    internal string Summary =>
        $"allocated: {BufferBytes} (num: {BufferCount} largest: {LargestBuffer}), free: {FreeBytes} (num: {FreeRanges} largest: {LargestFreeRange})";

    /// <inheritdoc/>
    public override string ToString() =>
        $"mode: {Mode}, data size: {DataSize}, free oneway space: {FreeOnewaySpace}, buffers: {BufferCount} " +
        $"({ReservedBuffers} reserved, {AllocatedBuffers} allocated, {OnewayBuffers} oneway), {Summary}, " +
        $"ignored frees: {IgnoredFrees}, failed reservations: {FailedReservations}, oneway spam reports: {OnewaySpamReports}, {Pages}";
}
