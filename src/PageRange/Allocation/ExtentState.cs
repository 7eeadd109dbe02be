namespace PageRange.Allocation;

/// <summary>The state of one extent of the data area (binder's descriptor states, plus Free for the gaps).</summary>
internal enum ExtentState : byte
{
    /// <summary>Not covered by any buffer.</summary>
    Free,

    /// <summary>The writer owns the buffer: it is being filled, or is in flight (binder's <c>Reserved</c>).</summary>
    Reserved,

    /// <summary>Delivered: the receiver owns the buffer and only a free gives it back (binder's <c>Allocated</c>).</summary>
    Allocated,

    /// <summary>
    /// Being freed: taken back from the receiver (binder's <c>reserve_existing</c>) and being zeroed outside the lock
    /// before its range is returned. Still live, so its pages stay Used; neither a commit, an abort nor a second
    /// free may touch it.
    /// </summary>
    Freeing,
}
