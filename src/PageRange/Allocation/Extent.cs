namespace PageRange.Allocation;

/// <summary>
/// One extent of the data area: a live buffer or a free range. Array mode stores live buffers only and uses just the
/// buffer fields; tree mode keeps every extent in address order (<see cref="Prev"/>/<see cref="Next"/>, as C's
/// <c>buffers</c> list) and in one of two trees: live buffers by offset, free ranges by (size, offset).
/// </summary>
/// <remarks>
/// Extents live in a pooled array and refer to each other by index, so linking, splitting and merging them never
/// allocates. A pooled extent that is not in use is chained through <see cref="Next"/>.
/// </remarks>
internal struct Extent
{
    /// <summary>The first byte, relative to the data area; a multiple of 8.</summary>
    internal long Offset;

    /// <summary>The length in bytes; a multiple of 8 and at least 8.</summary>
    internal long Size;

    /// <summary>Free, or the state of the buffer.</summary>
    internal ExtentState State;

    /// <summary>The buffer belongs to a oneway transaction and is charged to the oneway quota.</summary>
    internal bool Oneway;

    /// <summary>Zero the buffer when it is freed (binder's <c>TF_CLEAR_BUF</c>).</summary>
    internal bool ClearOnFree;

    /// <summary>The process that reserved the buffer, for oneway-spam detection and the dump.</summary>
    internal int SenderPid;

    /// <summary>
    /// Where the buffer's record sits on the transaction ring (the ring's tail when it was committed): the receiver has
    /// taken the record off the ring once the ring's head is past it. 0 until committed.
    /// </summary>
    internal ulong Sequence;

    /// <summary>The extent just before this one in address order, or <see cref="ExtentTree{TOrder}.Nil"/>.</summary>
    internal int Prev;

    /// <summary>The extent just after this one in address order (or the next unused pool slot), or <see cref="ExtentTree{TOrder}.Nil"/>.</summary>
    internal int Next;

    /// <summary>Links in the tree of live buffers, keyed by offset.</summary>
    internal TreeLinks ByOffset;

    /// <summary>Links in the tree of free ranges, keyed by (size, offset).</summary>
    internal TreeLinks BySize;

    /// <summary>One past the last byte.</summary>
    internal readonly long End => Offset + Size;

    /// <summary>A buffer (reserved, allocated or being freed) rather than a free range.</summary>
    internal readonly bool IsLive => State != ExtentState.Free;
}
