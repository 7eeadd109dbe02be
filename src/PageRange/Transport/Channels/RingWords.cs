using System.Numerics;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// Where one single-producer single-consumer ring lies in a region: its tail word, its head word and its slots.
/// <see cref="RingProducer{TRecord}"/> and <see cref="RingConsumer{TRecord}"/> are two views of the same words.
/// </summary>
/// <remarks>Safety: the pointers are valid while the region they came from stays mapped (its owner holds a reference).</remarks>
/// <typeparam name="TRecord">The record type; one slot holds one record.</typeparam>
internal readonly unsafe struct RingWords<TRecord>
    where TRecord : unmanaged
{
    private RingWords(ulong* tail, ulong* head, TRecord* slots, int capacity, string name)
    {
        Tail = tail;
        Head = head;
        Slots = slots;
        Capacity = (ulong)capacity;
        Mask = (ulong)capacity - 1;
        Name = name;
    }

    /// <summary>The tail word: records published so far, written by the producer.</summary>
    internal ulong* Tail { get; }

    /// <summary>The head word: records consumed so far, written by the consumer.</summary>
    internal ulong* Head { get; }

    /// <summary>The first of <see cref="Capacity"/> slots.</summary>
    internal TRecord* Slots { get; }

    /// <summary>The number of slots, a power of two.</summary>
    internal ulong Capacity { get; }

    /// <summary><see cref="Capacity"/> - 1: a free-running index masked with it names its slot.</summary>
    internal ulong Mask { get; }

    /// <summary>The ring's name, for error messages.</summary>
    internal string Name { get; }

    /// <summary>Locates a ring laid out in <paramref name="region"/>, checking that every part lies inside it.</summary>
    /// <param name="region">The region; the caller keeps it mapped (holds a reference) while the ring is used.</param>
    /// <param name="tailOffset">Byte offset of the tail word, 8-byte aligned.</param>
    /// <param name="headOffset">Byte offset of the head word, 8-byte aligned.</param>
    /// <param name="slotsOffset">Byte offset of the first slot.</param>
    /// <param name="capacity">Slots, a power of two.</param>
    /// <param name="name">The ring's name, for error messages.</param>
    /// <exception cref="ArgumentException">A part lies outside the region, is misaligned, or the capacity is not a power of two.</exception>
    internal static RingWords<TRecord> Over(SharedRegion region, long tailOffset, long headOffset, long slotsOffset, int capacity, string name)
    {
        ArgumentNullException.ThrowIfNull(region);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        if (!BitOperations.IsPow2(capacity) || tailOffset % 8 != 0 || headOffset % 8 != 0)
        {
            throw new ArgumentException("A ring needs a power-of-two capacity and 8-byte aligned index words.", nameof(capacity));
        }
        // SAFETY: each GetSpan checks that its bytes lie inside the mapping; the pointers are taken from the spans'
        // first elements (a mapping never moves, so fixed pins nothing) and the caller keeps the mapping alive for
        // the ring's life.
        fixed (byte* tail = region.GetSpan(tailOffset, sizeof(ulong)))
        fixed (byte* head = region.GetSpan(headOffset, sizeof(ulong)))
        fixed (byte* slots = region.GetSpan(slotsOffset, checked(capacity * sizeof(TRecord))))
        {
            return new RingWords<TRecord>((ulong*)tail, (ulong*)head, (TRecord*)slots, capacity, name);
        }
    }
}
