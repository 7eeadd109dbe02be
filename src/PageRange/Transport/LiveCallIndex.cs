using System.Diagnostics;
using System.Numerics;
using System.Security.Cryptography;

namespace PageRange.Transport;

/// <summary>
/// The live incoming two-way calls by the peer's transaction id, for its cancel frames: a table of doubly linked
/// chains of slot indices, used under the connection's slot lock only.
/// </summary>
/// <remarks>
/// <para>
/// Why not a <see cref="Dictionary{TKey, TValue}"/>: its insert per received call and its removal per freed call were
/// ~5 and ~4 ns of a round trip in the call probe (the comparer's hashing, entries, buckets, write barriers), the
/// insert on the round trip's critical path (between the request's arrival and the handler). Here an insert and a
/// removal are a few stores of integers, whatever the chain's length: the chains are doubly linked. (Singly linked,
/// a peer that sent every call under one id made each free walk the whole chain, found by review: its calls freed
/// oldest first cost 150 µs a free with 16,384 of them live.)
/// </para>
/// <para>
/// The ids are the peer's. A per-connection random odd multiplier picks a chain (the multiplicative hash's top bits),
/// so a peer cannot aim distinct ids at one chain: it does not know the multiplier. A peer that reuses an id puts
/// those calls in one chain, newest first: a cancel of that id finds the newest at once (the older ones are cancellable
/// only once it is freed, which only hurts the peer's own calls), and a cancel of another id walks that chain only if
/// its own lands there, as likely as any chain. Every chain is bounded by the slots there are.
/// </para>
/// </remarks>
internal sealed class LiveCallIndex
{
    // Per chain, its first slot's index plus one (0: empty). Each slot's NextById continues the chain the same way.
    private readonly int[] _heads;
    private readonly IncomingSlot?[] _slots;
    private readonly ulong _multiplier;
    private readonly int _shift;
    private int _count;
    private long _chainSteps;

    /// <summary>Creates an empty index over <paramref name="slots"/> (the connection's slots, indexed by <see cref="IncomingSlot.Index"/>).</summary>
    /// <param name="slots">The slots; a slot added must be the one at its index.</param>
    /// <param name="capacity">About how many calls may be live at once (the chains' count is the next power of two, at least 16).</param>
    internal LiveCallIndex(IncomingSlot?[] slots, int capacity)
    {
        ArgumentNullException.ThrowIfNull(slots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(capacity, 16, 1 << 24));
        _heads = new int[size];
        _slots = slots;
        _shift = 64 - BitOperations.Log2((uint)size);
        Span<byte> seed = stackalloc byte[sizeof(ulong)];
        RandomNumberGenerator.Fill(seed);
        _multiplier = BitConverter.ToUInt64(seed) | 1;
    }

    /// <summary>Calls indexed now.</summary>
    internal int Count => _count;

    /// <summary>Links followed by <see cref="Find"/> so far past a chain's head (for tests: removals follow none).</summary>
    internal long ChainStepsForTest => _chainSteps;

    private int ChainOf(ulong id) => (int)((id * _multiplier) >> _shift);

    /// <summary>Indexes a live call's slot under its record's transaction id (the newest of equal ids is found first).</summary>
    /// <param name="slot">The slot, its record just stored.</param>
    /// <param name="id">Its record's transaction id, from the caller's copy: the slot's own was stored a few instructions
    /// earlier by a wide copy of the record, and the load of it waited for that store (~5 ns in the call probe).</param>
    internal void Add(IncomingSlot slot, ulong id)
    {
        Debug.Assert(!slot.IndexedById, "A slot is indexed once while live.");
        Debug.Assert(id == slot.Record.TransactionId, "The id is the slot's record's.");
        ref int head = ref _heads[ChainOf(id)];
        slot.NextById = head;
        slot.PreviousById = 0;
        if (head != 0)
        {
            _slots[head - 1]!.PreviousById = slot.Index + 1;
        }
        head = slot.Index + 1;
        slot.IndexedById = true;
        _count++;
    }

    /// <summary>Takes a slot <see cref="Add"/> indexed out again (its record must not have changed since).</summary>
    /// <returns>Whether it was indexed.</returns>
    internal bool Remove(IncomingSlot slot)
    {
        if (!slot.IndexedById)
        {
            return false;
        }
        if (slot.PreviousById == 0)
        {
            _heads[ChainOf(slot.Record.TransactionId)] = slot.NextById;
        }
        else
        {
            _slots[slot.PreviousById - 1]!.NextById = slot.NextById;
        }
        if (slot.NextById != 0)
        {
            _slots[slot.NextById - 1]!.PreviousById = slot.PreviousById;
        }
        slot.NextById = 0;
        slot.PreviousById = 0;
        slot.IndexedById = false;
        _count--;
        return true;
    }

    /// <summary>The newest live call indexed under <paramref name="id"/>, or <see langword="null"/>.</summary>
    internal IncomingSlot? Find(ulong id)
    {
        for (int link = _heads[ChainOf(id)]; link != 0;)
        {
            IncomingSlot slot = _slots[link - 1]!;
            if (slot.Record.TransactionId == id)
            {
                return slot;
            }
            link = slot.NextById;
            _chainSteps++;
        }
        return null;
    }
}
