using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
    private readonly RingWords<TRecord> _ring;
    private ulong _tail;
    private ulong _publishedTail;
    private ulong _head;

    /// <summary>Creates the producer over words and slots that stay mapped for its whole life.</summary>
    /// <remarks>Safety: the caller keeps the mapping alive while this object is used; both indices start at zero.</remarks>
    private RingProducer(RingWords<TRecord> ring) => _ring = ring;

    /// <summary>Creates the producer over a ring laid out in <paramref name="region"/>, checking that every part lies inside it.</summary>
    /// <inheritdoc cref="RingWords{TRecord}.Over"/>
    internal static RingProducer<TRecord> Over(SharedRegion region, long tailOffset, long headOffset, long slotsOffset, int capacity, string name) =>
        new(RingWords<TRecord>.Over(region, tailOffset, headOffset, slotsOffset, capacity, name));

    /// <summary>The number of slots.</summary>
    internal int Capacity => (int)_ring.Capacity;

    /// <summary>Records written so far (our private copy of the tail), published or not.</summary>
    internal ulong Tail => _tail;

    /// <summary>Records published so far: the tail last stored to shared memory.</summary>
    internal ulong PublishedTail => Volatile.Read(ref _publishedTail);

    /// <summary>Records written by <see cref="TryWriteUnpublished(in TRecord)"/> whose tail is not stored yet; any thread may read it as a hint.</summary>
    internal int Unpublished => (int)(Volatile.Read(ref _tail) - Volatile.Read(ref _publishedTail));

    /// <summary>Loads the consumer's head once, validates it and returns how many slots are free now.</summary>
    /// <exception cref="ProtocolViolationException">The head went backwards or past the tail.</exception>
    internal int FreeSlots() => (int)(_ring.Capacity - (_tail - LoadHead()));

    /// <summary>Loads the consumer's head once, validates it and returns it: records before it have been consumed.</summary>
    /// <exception cref="ProtocolViolationException">The head went backwards or past the tail.</exception>
    internal ulong LoadHead()
    {
        // Acquire: pairs with the release store of the head in RingConsumer.Advance: the consumer has finished
        // copying every slot before the head we see, so we may overwrite them.
        // SAFETY: _ring.Head points at the head word in the region's header, which the owner keeps mapped while it
        // produces; the value is the peer's, so it is read once here and validated below before any use.
        ulong head = Volatile.Read(ref *_ring.Head);
        // Unsigned distances: valid iff _head <= head <= _tail on the free-running counters.
        if (head - _head > _tail - _head)
        {
            ThrowBadHead(head);
        }
        _head = head;
        return head;
    }

    /// <summary>Whether a slot is free; loads the consumer's head only when our last view says the ring is full.</summary>
    /// <exception cref="ProtocolViolationException">The head is invalid.</exception>
    internal bool HasFreeSlot() => _tail - _head < _ring.Capacity || FreeSlots() > 0;

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
        // SAFETY: tail & _ring.Mask < _ring.Capacity, so the slot lies within the ring the constructor was given, which the
        // owner keeps mapped; the slot is free (tail - head < capacity), so the consumer is not reading it.
        stores.StoreRecord(ref _ring.Slots[tail & _ring.Mask], in record);
        // SAFETY: _ring.Tail points at the ring's tail word in the mapping the owner keeps alive.
        stores.StoreTail(ref *_ring.Tail, tail + 1);
        // The tail stored covers the records written unpublished before this one too.
        Volatile.Write(ref _tail, tail + 1);
        Volatile.Write(ref _publishedTail, tail + 1);
        return true;
    }

    /// <summary>
    /// Publishes <paramref name="record"/> followed by <paramref name="payload"/> in the next slots (see
    /// <see cref="InlineLayout"/>), under one tail store, if the ring then holds at most <paramref name="maxUnconsumed"/>
    /// slots the consumer has not taken.
    /// </summary>
    /// <param name="record">The record, stored in the first slot after the payload's slots are written.</param>
    /// <param name="payload">At most <see cref="InlineLayout.MaxPayload"/> bytes, copied into the following slots.</param>
    /// <param name="maxUnconsumed">The most slots that may wait unconsumed after this publish (the writer keeps the rest
    /// for the records of the buffers it may still make live).</param>
    /// <returns><see langword="false"/> (nothing written) if the ring lacks the room.</returns>
    /// <exception cref="ProtocolViolationException">The peer stored an invalid head.</exception>
    internal bool TryPublishInline(in TRecord record, ReadOnlySpan<byte> payload, int maxUnconsumed)
    {
        if (sizeof(TRecord) != TransactionRecordLayout.Size || payload.Length > InlineLayout.MaxPayload)
        {
            // The first a constant the JIT folds away for the transaction ring; the second the caller's check.
            throw new InvalidOperationException($"TryPublishInline takes transaction records and at most {InlineLayout.MaxPayload} bytes.");
        }
        int payloadSlots = InlineLayout.PayloadSlots(payload.Length);
        ulong need = (ulong)(1 + payloadSlots);
        // The last head we saw first (no shared load; it only overstates what waits); the shared head only when that
        // view says the room is short.
        if (_tail - _head + need > (ulong)maxUnconsumed && _tail - LoadHead() + need > (ulong)maxUnconsumed)
        {
            return false;
        }
        ulong tail = _tail;
        ref byte source = ref MemoryMarshal.GetReference(payload);
        for (int i = 0; i < payloadSlots; i++)
        {
            int start = i * TransactionRecordLayout.Size;
            // SAFETY: the index is masked into the ring, which the owner keeps mapped; the slot is free (the room was
            // checked above against the consumer's head), so the consumer is not reading it; at most a slot's 64 bytes
            // are written, and read from within the payload.
            byte* slot = (byte*)(_ring.Slots + ((tail + 1 + (ulong)i) & _ring.Mask));
            if (payload.Length - start >= TransactionRecordLayout.Size)
            {
                // A whole slot: a constant size, which the JIT copies with a few vector moves instead of a call.
                Unsafe.CopyBlockUnaligned(ref *slot, ref Unsafe.Add(ref source, start), TransactionRecordLayout.Size);
            }
            else
            {
                payload[start..].CopyTo(new Span<byte>(slot, TransactionRecordLayout.Size));
            }
        }
        // SAFETY: as above: a free slot inside the mapped ring.
        _ring.Slots[tail & _ring.Mask] = record;
        ulong end = tail + 1 + (ulong)payloadSlots;
        // Release: pairs with the acquire load of the tail in RingConsumer.LoadTail: the payload and the record stored
        // above are visible to a consumer that sees the new tail.
        // SAFETY: _ring.Tail points at the ring's tail word in the mapping the owner keeps alive.
        Volatile.Write(ref *_ring.Tail, end);
        Volatile.Write(ref _tail, end);
        Volatile.Write(ref _publishedTail, end);
        return true;
    }

    /// <summary>
    /// <see cref="TryWriteUnpublished(in TRecord)"/> for a record of two 8-byte words (a free record), stored straight
    /// from registers.
    /// </summary>
    /// <remarks>
    /// A record built on the stack and copied as one 16-byte load waits for the two 8-byte stores that built it (a load
    /// spanning two stores is not forwarded from them): ~5-7 ns per free in the call probe, on the round trip's path.
    /// </remarks>
    internal bool TryWriteUnpublished(ulong first, ulong second)
    {
        // A constant the JIT folds away for the free ring's records; any other record type fails in every build.
        if (sizeof(TRecord) != 2 * sizeof(ulong))
        {
            throw new InvalidOperationException($"TryWriteUnpublished(ulong, ulong) writes records of two words, not {sizeof(TRecord)} bytes.");
        }
        if (!HasFreeSlot())
        {
            return false;
        }
        ulong tail = _tail;
        // SAFETY: as in TryWriteUnpublished(in TRecord): the slot lies within the ring and is free; the record is two
        // words long (asserted).
        ulong* slot = (ulong*)(_ring.Slots + (tail & _ring.Mask));
        slot[0] = first;
        slot[1] = second;
        Volatile.Write(ref _tail, tail + 1);
        return true;
    }

    /// <summary>
    /// If a slot is free, writes <paramref name="record"/> into it without storing the tail: the consumer sees it only
    /// at the next <see cref="PublishTail"/> (or <see cref="TryPublish"/>), which hands over a batch with one store.
    /// </summary>
    /// <returns><see langword="false"/> if the ring is full (nothing written).</returns>
    /// <exception cref="ProtocolViolationException">The consumer's head is invalid.</exception>
    internal bool TryWriteUnpublished(in TRecord record)
    {
        if (!HasFreeSlot())
        {
            return false;
        }
        ulong tail = _tail;
        // SAFETY: as in TryPublish: the slot lies within the ring, and it is free (tail - head < capacity, with the
        // unpublished records counted in our tail), so the consumer is not reading it.
        _ring.Slots[tail & _ring.Mask] = record;
        Volatile.Write(ref _tail, tail + 1);
        return true;
    }

    /// <summary>Stores our private tail to the shared tail word: every record written so far is published.</summary>
    /// <returns>Whether anything was unpublished.</returns>
    internal bool PublishTail()
    {
        ulong tail = _tail;
        if (tail == _publishedTail)
        {
            return false;
        }
        // Release: pairs with the acquire load of the tail in RingConsumer.LoadTail: the records written before are
        // visible to a consumer that sees the new tail.
        // SAFETY: _ring.Tail points at the ring's tail word in the mapping the owner keeps alive.
        Volatile.Write(ref *_ring.Tail, tail);
        Volatile.Write(ref _publishedTail, tail);
        return true;
    }

    [DoesNotReturn]
    private void ThrowBadHead(ulong head) =>
        throw new ProtocolViolationException(
            $"The peer's {_ring.Name} ring head is {head}, outside [{_head}, {_tail}] (the last head seen and our tail).");
}
