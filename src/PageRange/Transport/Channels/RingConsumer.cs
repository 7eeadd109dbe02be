using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
    private readonly RingWords<TRecord> _ring;
    private ulong _head;
    private ulong _tail;

    /// <summary>Creates the consumer over words and slots that stay mapped for its whole life.</summary>
    /// <remarks>Safety: the caller keeps the mapping alive while this object is used; both indices start at zero.</remarks>
    private RingConsumer(RingWords<TRecord> ring) => _ring = ring;

    /// <summary>Creates the consumer over a ring laid out in <paramref name="region"/>, checking that every part lies inside it.</summary>
    /// <inheritdoc cref="RingWords{TRecord}.Over"/>
    internal static RingConsumer<TRecord> Over(SharedRegion region, long tailOffset, long headOffset, long slotsOffset, int capacity, string name) =>
        new(RingWords<TRecord>.Over(region, tailOffset, headOffset, slotsOffset, capacity, name));

    /// <summary>The number of slots.</summary>
    internal int Capacity => (int)_ring.Capacity;

    /// <summary>Records consumed so far (our private copy of the head).</summary>
    internal ulong Head => _head;

    /// <summary>
    /// Whether the producer's tail differs from our head: a hint for waiters, not validated (the next
    /// <see cref="TryPeek"/> validates).
    /// </summary>
    // SAFETY: _ring.Tail points into the mapping the owner keeps alive; an aligned 8-byte load is atomic.
    internal bool HasData => Volatile.Read(ref *_ring.Tail) != Volatile.Read(ref _head);

    /// <summary>
    /// Whether records are left to consume: known from the last validated load of the tail, or published since (the
    /// producer's tail differs from our head: a hint, validated by the next <see cref="TryPeek"/>).
    /// </summary>
    internal bool HasUnconsumed => _tail != _head || HasData;

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
        // SAFETY: _head & _ring.Mask < _ring.Capacity, so the slot lies within the ring the owner keeps mapped. The producer
        // may be misbehaving and writing it right now: we copy it once and the caller validates the copy.
        TRecord* slot = _ring.Slots + (_head & _ring.Mask);
        if (sizeof(TRecord) == 64 && Vector256.IsHardwareAccelerated)
        {
            // A record of one line is copied as two halves, not as the one 64-byte store the JIT makes of a plain copy on
            // AVX-512 hardware: the caller reads the copy's fields right after, and a load from the upper half of a
            // 64-byte store is not forwarded from it (it waits for the store to reach the cache), which was ~4.5 ns per
            // received call on the Xeon model 207 guest (call-probe's profile: the first load of Depth, at byte 40).
            Unsafe.SkipInit(out record);
            ref byte copy = ref Unsafe.As<TRecord, byte>(ref record);
            // SAFETY: the slot is 64 bytes inside the mapping (above); both halves are read once each, into the copy.
            Unsafe.WriteUnaligned(ref copy, Unsafe.ReadUnaligned<Vector256<byte>>(slot));
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref copy, 32), Unsafe.ReadUnaligned<Vector256<byte>>((byte*)slot + 32));
        }
        else
        {
            record = *slot;
        }
        return true;
    }

    /// <summary>
    /// Copies the payload of the record at the head (see <see cref="InlineLayout"/>) out of the <paramref name="slots"/>
    /// slots after it into <paramref name="destination"/> (whole slots, so at least that many times 64 bytes; the bytes
    /// past the payload's end in its last slot are copied too, and are nobody's), if the tail covers them, and
    /// advances the head past the record and its payload, unpublished.
    /// </summary>
    /// <returns><see langword="false"/> (nothing advanced) if the tail does not cover the payload: the writer published
    /// a record without its payload.</returns>
    /// <exception cref="ProtocolViolationException">The peer stored an invalid tail.</exception>
    internal bool TryTakeInline(int slots, Span<byte> destination)
    {
        Debug.Assert(sizeof(TRecord) == TransactionRecordLayout.Size && destination.Length >= slots * TransactionRecordLayout.Size);
        ulong need = (ulong)(1 + slots);
        if (_tail - _head < need)
        {
            LoadTail();
            if (_tail - _head < need)
            {
                return false;
            }
        }
        // Sliced, so a destination too short fails here in every build, not only the assertion's.
        ref byte target = ref MemoryMarshal.GetReference(destination[..(slots * TransactionRecordLayout.Size)]);
        for (int i = 0; i < slots; i++)
        {
            // SAFETY: the index is masked into the ring, which the owner keeps mapped; the slot is published (below the
            // tail checked above) and 64 bytes long; the destination holds whole slots (asserted). The producer may be
            // misbehaving and writing it right now: it is copied once, into private memory, and nothing is decided from
            // its bytes here. Whole slots, a constant size the JIT copies with a few vector moves instead of a call.
            Unsafe.CopyBlockUnaligned(
                ref Unsafe.Add(ref target, i * TransactionRecordLayout.Size),
                ref *(byte*)(_ring.Slots + ((_head + 1 + (ulong)i) & _ring.Mask)),
                TransactionRecordLayout.Size);
        }
        Volatile.Write(ref _head, _head + need);
        return true;
    }

    /// <summary>Consumes the record <see cref="TryPeek"/> returned, handing its slot back to the producer.</summary>
    internal void Advance()
    {
        AdvanceUnpublished();
        PublishHead();
    }

    /// <summary>
    /// Consumes the record <see cref="TryPeek"/> returned in our private head only: the producer does not see the slot
    /// handed back until <see cref="PublishHead"/>. A batch of records consumed this way costs one shared store.
    /// </summary>
    internal void AdvanceUnpublished() => Volatile.Write(ref _head, _head + 1);

    /// <summary>Stores our private head to the shared head word: every record consumed so far is handed back.</summary>
    internal void PublishHead() =>
        // Release: pairs with the acquire load of the head in RingProducer.LoadHead: our copies of the slots are
        // complete before the producer may overwrite them.
        // SAFETY: _ring.Head points at the ring's head word in the mapping the owner keeps alive.
        Volatile.Write(ref *_ring.Head, _head);

    private void LoadTail()
    {
        // Acquire: pairs with the release store of the tail in the producer's IPublishStores.StoreTail: every
        // record (and payload) published before that tail is visible once we see it.
        // SAFETY: _ring.Tail points at the ring's tail word in the mapping the owner keeps alive.
        ulong tail = Volatile.Read(ref *_ring.Tail);
        // Valid iff _tail <= tail <= _head + capacity on the free-running counters.
        if (tail - _tail > _ring.Capacity - (_tail - _head))
        {
            ThrowBadTail(tail);
        }
        _tail = tail;
    }

    [DoesNotReturn]
    private void ThrowBadTail(ulong tail) =>
        throw new ProtocolViolationException(
            $"The peer's {_ring.Name} ring tail is {tail}, outside [{_tail}, {_head + _ring.Capacity}] (the last tail seen and our head plus the capacity).");
}
