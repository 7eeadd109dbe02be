using System.Diagnostics;

namespace PageRange.Allocation;

/// <summary>
/// The slabs small messages share (<see cref="BufferSlab"/>), one set for oneway messages and one for two-way calls
/// and replies: one is being filled, the others were filled up
/// and wait for their last slot to be freed, when their buffer goes back to the allocator (its pages Available, so
/// the shrinker can reclaim them).
/// </summary>
/// <remarks>
/// <para>
/// While the receiver keeps up, the slab being filled never fills up: slots freed come back and are taken again, so
/// a stream of small messages makes no allocator reservation, tree update or page-state change at all. When the
/// receiver falls behind, a full slab is left to drain and another is opened, up to <see cref="MaxSlabs"/>; beyond
/// that, or when the allocator has no room for a slab, a message takes a buffer of its own as before.
/// </para>
/// <para>
/// A oneway set's slab is reserved as a oneway buffer, so its whole size counts against the oneway quota while it
/// exists (binder's limit on what asynchronous messages may hold stays a limit); a two-way set's slab is reserved as
/// a plain buffer, as the calls and replies it holds would be, so oneway messages can never take room from calls
/// through it, nor calls from oneways. The slab being filled is given back when it is empty
/// and the writer goes idle (<see cref="ReleaseIdle"/>, from the connection's housekeeping of an idle writer).
/// </para>
/// <para>
/// Thread safety: none of its own; the owner holds the allocator's shared lock (<see cref="BufferAllocatorOptions.SharedLock"/>)
/// around every call, and the allocator is called through its <c>…UnderLock</c> members.
/// </para>
/// </remarks>
internal sealed class BufferSlabs
{
    /// <summary>The most slabs at once (16 KiB each, so at most 128 KiB of the oneway quota, and at most a quarter of it).</summary>
    internal const int MaxSlabs = 8;

    /// <summary>The most slabs of calls and replies at once: a round trip keeps about one lazy-drain batch live, a slab
    /// holds four such batches, and the rest take buffers of their own (room for large calls matters more).</summary>
    internal const int MaxCallSlabs = 2;

    private readonly BufferAllocator _allocator;
    private readonly bool _oneway;
    private readonly BufferSlab[] _slabs;
    private BufferSlab? _filling;
    private long _slabsOpened;
    private long _slabsReleased;

    /// <summary>Creates the (empty) set of slabs over <paramref name="allocator"/>, which must use its owner's shared lock.</summary>
    /// <param name="allocator">The data area's allocator.</param>
    /// <param name="oneway">Slabs for oneway messages (charged to the oneway quota); otherwise for calls and replies.</param>
    internal BufferSlabs(BufferAllocator allocator, bool oneway = true)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        _allocator = allocator;
        _oneway = oneway;
        // Slabs may hold at most a quarter of the oneway quota (an eighth of the data area): in a small region they
        // would crowd out the messages that need a buffer of their own (and one that cannot hold four slabs has none).
        long limit = allocator.OnewayQuota / 4 / BufferSlab.Bytes;
        _slabs = new BufferSlab[(int)Math.Min(oneway ? MaxSlabs : MaxCallSlabs, limit)];
        for (int i = 0; i < _slabs.Length; i++)
        {
            _slabs[i] = new BufferSlab();
        }
    }

    /// <summary>Slabs holding a buffer of the allocator now.</summary>
    internal int SlabsInUse
    {
        get
        {
            int count = 0;
            foreach (BufferSlab slab in _slabs)
            {
                count += slab.InUse ? 1 : 0;
            }
            return count;
        }
    }

    /// <summary>Slab buffers reserved from the allocator so far.</summary>
    internal long SlabsOpened => _slabsOpened;

    /// <summary>Slab buffers given back to the allocator so far.</summary>
    internal long SlabsReleased => _slabsReleased;

    /// <summary>Whether a message of <paramref name="size"/> bytes may take a slot.</summary>
    internal static bool Fits(int size) => size <= BufferSlab.SlotSize;

    /// <summary>Reserves a slot for a message of at most <see cref="BufferSlab.SlotSize"/> bytes, opening a slab if needed.</summary>
    /// <param name="senderPid">The sending process, for the allocator's oneway-spam accounting of a new slab.</param>
    /// <param name="offset">The slot's offset in the data area; its pages are Used.</param>
    /// <returns><see langword="false"/> if no slot is free and no slab can be opened now: the message takes a buffer of its own.</returns>
    /// <exception cref="BackingAllocationException">A page of a new slab could not be backed.</exception>
    internal bool TryReserveUnderLock(int senderPid, out long offset)
    {
        if (_filling is { } filling && filling.TryTake(out offset))
        {
            return true;
        }
        BufferSlab? spare = null;
        foreach (BufferSlab slab in _slabs)
        {
            if (!slab.InUse)
            {
                spare = slab;
                break;
            }
        }
        if (spare is null
            || !_allocator.TryReserveUnderLock(BufferSlab.Bytes, _oneway, clearOnFree: false, senderPid, out long slabOffset))
        {
            offset = 0;
            return false;
        }
        // The full slab is left to drain; it goes back to the allocator with its last free.
        if (_filling is not null)
        {
            _filling.Filling = false;
        }
        spare.Open(slabOffset);
        _slabsOpened++;
        _filling = spare;
        bool taken = spare.TryTake(out offset);
        Debug.Assert(taken, "A new slab has every slot free.");
        return true;
    }

    /// <summary>The slab being filled, if its buffer holds <paramref name="offset"/>; otherwise <see langword="null"/>.</summary>
    internal BufferSlab? FindFilling(long offset) => _filling is { } filling && filling.Contains(offset) ? filling : null;

    /// <summary>The slab whose buffer holds <paramref name="offset"/>, or <see langword="null"/>.</summary>
    internal BufferSlab? Find(long offset)
    {
        if (_filling is { } filling && filling.Contains(offset))
        {
            return filling;
        }
        foreach (BufferSlab slab in _slabs)
        {
            if (slab.Contains(offset))
            {
                return slab;
            }
        }
        return null;
    }

    /// <summary>Gives back a Reserved slot of <paramref name="slab"/>, and the slab's buffer if that was its last live slot and it is full.</summary>
    internal void AbortUnderLock(BufferSlab slab, long offset)
    {
        slab.Abort(offset);
        ReleaseIfDrained(slab);
    }

    /// <summary>Takes a free the receiver published of an offset inside <paramref name="slab"/>; gives back a drained full slab.</summary>
    internal SlotFreeResult FreeUnderLock(BufferSlab slab, long offset, ulong deliveredBefore)
    {
        SlotFreeResult result = slab.Free(offset, deliveredBefore);
        if (result == SlotFreeResult.Freed)
        {
            ReleaseIfDrained(slab);
        }
        return result;
    }

    /// <summary>
    /// The writer is idle (or about to close): the slab being filled goes back to the allocator if no slot of it is
    /// live, so its pages become Available and the shrinker can reclaim them. The next small message opens a new one.
    /// </summary>
    /// <returns>Whether a slab was given back.</returns>
    internal bool ReleaseIdle()
    {
        if (_filling is { IsEmpty: true } filling)
        {
            filling.Filling = false;
            _filling = null;
            Release(filling);
            return true;
        }
        return false;
    }

    private void ReleaseIfDrained(BufferSlab slab)
    {
        if (!slab.Filling && slab.IsEmpty)
        {
            Release(slab);
        }
    }

    private void Release(BufferSlab slab)
    {
        long offset = slab.Offset;
        slab.Close();
        _slabsReleased++;
        // Never committed: the allocator's abort gives the range back and stops using the pages no neighbour shares.
        _allocator.AbortUnderLock(offset);
    }
}
