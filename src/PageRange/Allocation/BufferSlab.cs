using System.Diagnostics;
using System.Numerics;

namespace PageRange.Allocation;

/// <summary>
/// One buffer of the data area, reserved once from the <see cref="BufferAllocator"/>, cut into
/// <see cref="SlotCount"/> slots of <see cref="SlotSize"/> bytes that small messages take one each: a message costs a
/// bit in a mask instead of an allocator reservation, a tree update and a page-state change.
/// </summary>
/// <remarks>
/// <para>
/// A slot goes through the states of a buffer: free, Reserved (<see cref="TryTake"/>), Allocated with the ring position
/// of its record (<see cref="Commit"/>), free again (<see cref="Free"/> once delivered, or <see cref="Abort"/>). Two
/// masks hold them: <c>_live</c> (Reserved or Allocated) and <c>_allocated</c>.
/// </para>
/// <para>
/// The slab lives in the writer's private memory, like the allocator: nothing of it is in shared memory, and the
/// receiver sees a slot as any buffer (an offset and a length in the data area). Thread safety: none; the owner
/// serialises every call (the outbound channel's send lock).
/// </para>
/// </remarks>
internal sealed class BufferSlab
{
    /// <summary>Slots per slab: one bit each in a 64-bit mask.</summary>
    internal const int SlotCount = 64;

    /// <summary>Bytes per slot: the largest message a slot takes.</summary>
    internal const int SlotSize = 256;

    /// <summary>The size of the slab's buffer (16 KiB: four pages of 4 KiB).</summary>
    internal const long Bytes = (long)SlotCount * SlotSize;

    private readonly ulong[] _sequences = new ulong[SlotCount];
    private ulong _live;
    private ulong _allocated;

    /// <summary>The slab buffer's offset in the data area; -1 while the slab holds no buffer.</summary>
    internal long Offset { get; private set; } = -1;

    /// <summary>Whether the slab holds a buffer of the allocator.</summary>
    internal bool InUse => Offset >= 0;

    /// <summary>Whether the writer still takes slots from this slab; once not, the slab is given back when its last slot is freed.</summary>
    internal bool Filling { get; set; }

    /// <summary>Slots Reserved or Allocated.</summary>
    internal int LiveSlots => BitOperations.PopCount(_live);

    /// <summary>Whether no slot is live.</summary>
    internal bool IsEmpty => _live == 0;

    /// <summary>Starts using the allocator's buffer at <paramref name="offset"/> (<see cref="Bytes"/> long), every slot free.</summary>
    internal void Open(long offset)
    {
        Debug.Assert(!InUse && offset >= 0 && offset % BufferAllocator.Alignment == 0, "A slab opens once, on an aligned buffer.");
        Offset = offset;
        _live = 0;
        _allocated = 0;
        Filling = true;
    }

    /// <summary>Forgets the buffer (the owner gave it back to the allocator).</summary>
    internal void Close()
    {
        Debug.Assert(IsEmpty, "A slab is given back only when no slot is live.");
        Offset = -1;
        Filling = false;
    }

    /// <summary>Whether <paramref name="offset"/> lies inside this slab's buffer (a slot's start or not).</summary>
    internal bool Contains(long offset) => InUse && (ulong)(offset - Offset) < (ulong)Bytes;

    /// <summary>Reserves the lowest free slot.</summary>
    /// <returns><see langword="false"/> if every slot is live.</returns>
    internal bool TryTake(out long offset)
    {
        Debug.Assert(InUse, "Slots are taken from an open slab.");
        ulong free = ~_live;
        if (free == 0)
        {
            offset = 0;
            return false;
        }
        int slot = BitOperations.TrailingZeroCount(free);
        _live |= 1UL << slot;
        offset = Offset + ((long)slot * SlotSize);
        return true;
    }

    /// <summary>Delivers a Reserved slot whose record goes to ring position <paramref name="sequence"/>.</summary>
    /// <exception cref="InvalidOperationException">No Reserved slot starts at <paramref name="offset"/> (a bug of the owner).</exception>
    internal void Commit(long offset, ulong sequence)
    {
        ulong bit = ReservedBit(offset, "commit");
        _allocated |= bit;
        _sequences[SlotIndex(offset)] = sequence;
    }

    /// <summary>Gives back a Reserved slot that was never delivered.</summary>
    /// <exception cref="InvalidOperationException">No Reserved slot starts at <paramref name="offset"/> (a bug of the owner).</exception>
    internal void Abort(long offset) => _live &= ~ReservedBit(offset, "abort");

    /// <summary>
    /// A free the receiver published, of an offset inside this slab (<see cref="Contains"/>), checked as a free of a
    /// buffer is: the offset must be a slot's start, the slot Allocated, and its record taken off the ring.
    /// </summary>
    /// <param name="offset">The offset the receiver named, a private copy.</param>
    /// <param name="deliveredBefore">The transaction ring's head, validated: records before it have been received.</param>
    internal SlotFreeResult Free(long offset, ulong deliveredBefore)
    {
        Debug.Assert(Contains(offset), "The owner routes only frees inside this slab here.");
        long relative = offset - Offset;
        if (relative % SlotSize != 0)
        {
            return SlotFreeResult.NotASlot;
        }
        int slot = (int)(relative / SlotSize);
        ulong bit = 1UL << slot;
        if ((_allocated & bit) == 0)
        {
            // Free, or Reserved by the writer and never published: the receiver cannot have been given this slot.
            return SlotFreeResult.NotLive;
        }
        if (_sequences[slot] >= deliveredBefore)
        {
            return SlotFreeResult.Undelivered;
        }
        _allocated &= ~bit;
        _live &= ~bit;
        return SlotFreeResult.Freed;
    }

    private static int SlotIndex(long offset, long slabOffset) => (int)((offset - slabOffset) / SlotSize);

    private int SlotIndex(long offset) => SlotIndex(offset, Offset);

    private ulong ReservedBit(long offset, string operation)
    {
        if (!Contains(offset) || (offset - Offset) % SlotSize != 0)
        {
            throw new InvalidOperationException($"Cannot {operation} offset {offset}: no slot of the slab at {Offset} starts there.");
        }
        ulong bit = 1UL << SlotIndex(offset);
        if ((_live & bit) == 0 || (_allocated & bit) != 0)
        {
            throw new InvalidOperationException($"Cannot {operation} the slot at offset {offset}: it is not Reserved.");
        }
        return bit;
    }
}
