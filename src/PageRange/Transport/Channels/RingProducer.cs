using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>The producing end of a single-producer single-consumer ring in a region's header.</summary>
/// <remarks>
/// The tail is ours: we keep it privately and only ever store it to shared memory, never read it back, so a peer
/// that scribbles over it cannot make us overwrite a slot it has not consumed. The head is the peer's: it is loaded
/// once per check, and must lie between the last head we saw and our tail, else the peer broke the protocol.
/// Thread safety: one producer thread at a time (the owning channel serialises).
/// </remarks>
/// <typeparam name="TRecord">The record type; one slot holds one record.</typeparam>
internal sealed unsafe class RingProducer<TRecord>
    where TRecord : unmanaged
{
    private readonly ulong* _tailWord;
    private readonly ulong* _headWord;
    private readonly TRecord* _slots;
    private readonly ulong _capacity;
    private readonly ulong _mask;
    private readonly string _name;
    private ulong _tail;
    private ulong _head;

    /// <summary>Creates the producer over words and slots that stay mapped for its whole life.</summary>
    /// <param name="tailWord">The ring's tail word (ours), 8-byte aligned.</param>
    /// <param name="headWord">The ring's head word (the consumer's), 8-byte aligned.</param>
    /// <param name="slots">The first of <paramref name="capacity"/> slots.</param>
    /// <param name="capacity">A power of two.</param>
    /// <param name="name">The ring's name, for error messages.</param>
    /// <remarks>Safety: the caller keeps the mapping alive while this object is used, and the tail starts at the
    /// value the consumer's head starts at (both zero in a fresh region).</remarks>
    internal RingProducer(ulong* tailWord, ulong* headWord, TRecord* slots, int capacity, string name)
    {
        _tailWord = tailWord;
        _headWord = headWord;
        _slots = slots;
        _capacity = (ulong)capacity;
        _mask = (ulong)capacity - 1;
        _name = name;
    }

    /// <summary>Creates the producer over a ring laid out in <paramref name="region"/>, checking that every part lies inside it.</summary>
    /// <param name="region">The region; the caller keeps it mapped (holds a reference) while the producer is used.</param>
    /// <param name="tailOffset">Byte offset of the tail word, 8-byte aligned.</param>
    /// <param name="headOffset">Byte offset of the head word, 8-byte aligned.</param>
    /// <param name="slotsOffset">Byte offset of the first slot.</param>
    /// <param name="capacity">Slots, a power of two.</param>
    /// <param name="name">The ring's name, for error messages.</param>
    /// <exception cref="ArgumentException">A part lies outside the region, is misaligned, or the capacity is not a power of two.</exception>
    internal static RingProducer<TRecord> Over(SharedRegion region, long tailOffset, long headOffset, long slotsOffset, int capacity, string name)
    {
        ArgumentNullException.ThrowIfNull(region);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        if (!BitOperations.IsPow2(capacity) || tailOffset % 8 != 0 || headOffset % 8 != 0)
        {
            throw new ArgumentException("A ring needs a power-of-two capacity and 8-byte aligned index words.", nameof(capacity));
        }
        // SAFETY: each GetSpan checks that its bytes lie inside the mapping; the pointers are taken from the spans'
        // first elements and the caller keeps the mapping alive for the ring's life.
        fixed (byte* tail = region.GetSpan(tailOffset, sizeof(ulong)))
        fixed (byte* head = region.GetSpan(headOffset, sizeof(ulong)))
        fixed (byte* slots = region.GetSpan(slotsOffset, checked(capacity * sizeof(TRecord))))
        {
            return new RingProducer<TRecord>((ulong*)tail, (ulong*)head, (TRecord*)slots, capacity, name);
        }
    }

    /// <summary>The number of slots.</summary>
    internal int Capacity => (int)_capacity;

    /// <summary>Records published so far (our private copy of the tail).</summary>
    internal ulong Tail => _tail;

    /// <summary>Loads the consumer's head once, validates it and returns how many slots are free now.</summary>
    /// <exception cref="ProtocolViolationException">The head went backwards or past the tail.</exception>
    internal int FreeSlots()
    {
        // Acquire: pairs with the release store of the head in RingConsumer.Advance: the consumer has finished
        // copying every slot before the head we see, so we may overwrite them.
        ulong head = Volatile.Read(ref *_headWord);
        // Unsigned distances: valid iff _head <= head <= _tail on the free-running counters.
        if (head - _head > _tail - _head)
        {
            ThrowBadHead(head);
        }
        _head = head;
        return (int)(_capacity - (_tail - head));
    }

    /// <summary>Whether a slot is free; loads the consumer's head only when our last view says the ring is full.</summary>
    /// <exception cref="ProtocolViolationException">The head is invalid.</exception>
    internal bool HasFreeSlot() => _tail - _head < _capacity || FreeSlots() > 0;

    /// <summary>
    /// If a slot is free, makes the stores of a publish in order (payload, record, release store of the tail)
    /// and returns <see langword="true"/>; else makes none and returns <see langword="false"/>.
    /// </summary>
    /// <exception cref="ProtocolViolationException">The consumer's head is invalid.</exception>
    internal bool TryPublish<TStores>(ref TStores stores, in TRecord record)
        where TStores : IPublishStores<TRecord>, allows ref struct
    {
        // Only look at the shared head when our last view says the ring is full: one shared load per wrap, not per publish.
        if (!HasFreeSlot())
        {
            return false;
        }
        ulong tail = _tail;
        stores.StorePayload();
        // SAFETY: tail & _mask < _capacity, so the slot lies within the ring the constructor was given, which the
        // owner keeps mapped; the slot is free (tail - head < capacity), so the consumer is not reading it.
        stores.StoreRecord(ref _slots[tail & _mask], in record);
        // SAFETY: _tailWord points at the ring's tail word in the mapping the owner keeps alive.
        stores.StoreTail(ref *_tailWord, tail + 1);
        _tail = tail + 1;
        return true;
    }

    [DoesNotReturn]
    private void ThrowBadHead(ulong head) =>
        throw new ProtocolViolationException(
            $"The peer's {_name} ring head is {head}, outside [{_head}, {_tail}] (the last head seen and our tail).");
}
