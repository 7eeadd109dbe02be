namespace PageRange.Allocation;

/// <summary>What <see cref="BufferSlab.Free"/> did with a free the receiver published of an offset inside a slab.</summary>
internal enum SlotFreeResult
{
    /// <summary>The slot was Allocated and delivered: it is free again.</summary>
    Freed,

    /// <summary>The slot's record is still on the transaction ring: ignored and counted, as a buffer's would be.</summary>
    Undelivered,

    /// <summary>The offset lies inside the slab but no slot starts there: a forged free.</summary>
    NotASlot,

    /// <summary>The slot is free or was never published: a double or forged free.</summary>
    NotLive,
}
