using System.Diagnostics.CodeAnalysis;
using System.Numerics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>The consuming end of a single-producer single-consumer ring in a region's header.</summary>
/// <remarks>
/// The head is ours: kept privately, only stored to shared memory. The tail is the peer's: loaded once (acquire),
/// validated (it may only grow, and never more than a ring's worth past our head), then trusted up to that value.
/// A slot is copied to a local once by <see cref="TryPeek"/>; the caller validates the copy and calls
/// <see cref="Advance"/> only if it is good, so a bad record keeps failing instead of being skipped.
/// Thread safety: one consumer thread at a time (the owning channel serialises); <see cref="HasData"/> may be called
/// from any thread as a hint.
/// </remarks>
/// <typeparam name="TRecord">The record type; one slot holds one record.</typeparam>
internal sealed unsafe class RingConsumer<TRecord>
    where TRecord : unmanaged
{
    private readonly ulong* _tailWord;
    private readonly ulong* _headWord;
    private readonly TRecord* _slots;
    private readonly ulong _capacity;
    private readonly ulong _mask;
    private readonly string _name;
    private ulong _head;
    private ulong _tail;

    /// <summary>Creates the consumer over words and slots that stay mapped for its whole life.</summary>
    /// <param name="tailWord">The ring's tail word (the producer's), 8-byte aligned.</param>
    /// <param name="headWord">The ring's head word (ours), 8-byte aligned.</param>
    /// <param name="slots">The first of <paramref name="capacity"/> slots.</param>
    /// <param name="capacity">A power of two.</param>
    /// <param name="name">The ring's name, for error messages.</param>
    /// <remarks>Safety: the caller keeps the mapping alive while this object is used; both indices start at zero.</remarks>
    internal RingConsumer(ulong* tailWord, ulong* headWord, TRecord* slots, int capacity, string name)
    {
        _tailWord = tailWord;
        _headWord = headWord;
        _slots = slots;
        _capacity = (ulong)capacity;
        _mask = (ulong)capacity - 1;
        _name = name;
    }

    /// <summary>Creates the consumer over a ring laid out in <paramref name="region"/>, checking that every part lies inside it.</summary>
    /// <param name="region">The region; the caller keeps it mapped (holds a reference) while the consumer is used.</param>
    /// <param name="tailOffset">Byte offset of the tail word, 8-byte aligned.</param>
    /// <param name="headOffset">Byte offset of the head word, 8-byte aligned.</param>
    /// <param name="slotsOffset">Byte offset of the first slot.</param>
    /// <param name="capacity">Slots, a power of two.</param>
    /// <param name="name">The ring's name, for error messages.</param>
    /// <exception cref="ArgumentException">A part lies outside the region, is misaligned, or the capacity is not a power of two.</exception>
    internal static RingConsumer<TRecord> Over(SharedRegion region, long tailOffset, long headOffset, long slotsOffset, int capacity, string name)
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
            return new RingConsumer<TRecord>((ulong*)tail, (ulong*)head, (TRecord*)slots, capacity, name);
        }
    }

    /// <summary>The number of slots.</summary>
    internal int Capacity => (int)_capacity;

    /// <summary>Records consumed so far (our private copy of the head).</summary>
    internal ulong Head => _head;

    /// <summary>
    /// Whether the producer's tail differs from our head: a hint for waiters, not validated (the next
    /// <see cref="TryPeek"/> validates).
    /// </summary>
    // SAFETY: _tailWord points into the mapping the owner keeps alive; an aligned 8-byte load is atomic.
    internal bool HasData => Volatile.Read(ref *_tailWord) != Volatile.Read(ref _head);

    /// <summary>Loads the producer's tail, validates it and returns how many records are ready.</summary>
    /// <exception cref="ProtocolViolationException">The tail went backwards or more than a ring ahead.</exception>
    internal int Count()
    {
        LoadTail();
        return (int)(_tail - _head);
    }

    /// <summary>Copies the oldest unconsumed record to <paramref name="record"/>, once, without consuming it.</summary>
    /// <returns><see langword="false"/> if the ring is empty.</returns>
    /// <exception cref="ProtocolViolationException">The producer's tail is invalid.</exception>
    internal bool TryPeek(out TRecord record)
    {
        if (_tail == _head)
        {
            LoadTail();
            if (_tail == _head)
            {
                record = default;
                return false;
            }
        }
        // SAFETY: _head & _mask < _capacity, so the slot lies within the ring the owner keeps mapped. The producer
        // may be misbehaving and writing it right now: we copy it once and the caller validates the copy.
        record = _slots[_head & _mask];
        return true;
    }

    /// <summary>Consumes the record <see cref="TryPeek"/> returned, handing its slot back to the producer.</summary>
    internal void Advance()
    {
        ulong head = _head + 1;
        Volatile.Write(ref _head, head);
        // Release: pairs with the acquire load of the head in RingProducer.FreeSlots: our copy of the slot is
        // complete before the producer may overwrite it.
        // SAFETY: _headWord points at the ring's head word in the mapping the owner keeps alive.
        Volatile.Write(ref *_headWord, head);
    }

    private void LoadTail()
    {
        // Acquire: pairs with the release store of the tail in the producer's IPublishStores.StoreTail: every
        // record (and payload) published before that tail is visible once we see it.
        // SAFETY: _tailWord points at the ring's tail word in the mapping the owner keeps alive.
        ulong tail = Volatile.Read(ref *_tailWord);
        // Valid iff _tail <= tail <= _head + capacity on the free-running counters.
        if (tail - _tail > _capacity - (_tail - _head))
        {
            ThrowBadTail(tail);
        }
        _tail = tail;
    }

    [DoesNotReturn]
    private void ThrowBadTail(ulong tail) =>
        throw new ProtocolViolationException(
            $"The peer's {_name} ring tail is {tail}, outside [{_tail}, {_head + _capacity}] (the last tail seen and our head plus the capacity).");
}
