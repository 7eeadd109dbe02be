namespace PageRange.Allocation;

/// <summary>How a <see cref="BufferAllocator"/> keeps its extents right now (binder's Rust <c>RangeAllocator</c> variants).</summary>
internal enum AllocatorMode
{
    /// <summary>No live buffer and no bookkeeping: the whole data area is one free range.</summary>
    Empty,

    /// <summary>At most <see cref="BufferAllocator.TreeThreshold"/> live buffers in a sorted array; first fit, biased to append.</summary>
    Array,

    /// <summary>Live and free extents in trees; best fit. Entered by the live buffer after the array's last slot.</summary>
    Tree,
}
