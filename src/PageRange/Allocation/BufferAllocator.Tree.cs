using System.Diagnostics;

namespace PageRange.Allocation;

/// <summary>
/// Tree mode (binder's Rust <c>TreeRangeAllocator</c>): every extent, live or free, in address order, live buffers in
/// a tree by offset and free ranges in a tree by (size, offset), all in a pool of <see cref="Extent"/>s.
/// </summary>
/// <remarks>
/// The pool is a plain array plus a free list, so steady-state tree operations allocate nothing. When it runs short
/// the reservation drops the lock, allocates a larger array, and retries; the copy into it happens under the lock but
/// allocates nothing (binder's "NeedAlloc, drop the lock, preallocate, retry").
/// </remarks>
internal sealed partial class BufferAllocator
{
    /// <summary>Builds the trees from the full array: one extent per buffer and per gap. Then the mode is Tree.</summary>
    private void ConvertToTreeUnsynchronized()
    {
        Debug.Assert(_mode == AllocatorMode.Array && _arrayCount == TreeThreshold, "Only a full array converts.");
        Debug.Assert(_poolCount >= ConversionExtents, "The pool was grown before.");
        int last = Nil;
        long cursor = 0;
        for (int i = 0; i < _arrayCount; i++)
        {
            ref Extent buffer = ref _array[i];
            if (buffer.Offset > cursor)
            {
                last = AppendUnsynchronized(last, new Extent { Offset = cursor, Size = buffer.Offset - cursor });
            }
            last = AppendUnsynchronized(last, buffer);
            cursor = buffer.End;
        }
        if (cursor < DataSize)
        {
            AppendUnsynchronized(last, new Extent { Offset = cursor, Size = DataSize - cursor });
        }
        System.Array.Clear(_array);
        _arrayCount = 0;
        _mode = AllocatorMode.Tree;
    }

    /// <summary>Puts a copy of <paramref name="extent"/> after <paramref name="last"/> in address order and into its tree.</summary>
    private int AppendUnsynchronized(int last, in Extent extent)
    {
        int node = TakeExtentUnsynchronized();
        Span<Extent> extents = _extents;
        extents[node] = extent;
        extents[node].Prev = last;
        extents[node].Next = Nil;
        if (last == Nil)
        {
            _first = node;
        }
        else
        {
            extents[last].Next = node;
        }
        if (extent.IsLive)
        {
            _offsetRoot = ExtentTree<ByOffsetOrder>.Insert(extents, _offsetRoot, node);
        }
        else
        {
            _sizeRoot = ExtentTree<BySizeOrder>.Insert(extents, _sizeRoot, node);
        }
        return node;
    }

    /// <summary>
    /// Best fit: the smallest free range that fits, ties to the lowest offset; the buffer takes its start and the
    /// remainder stays free right after it. Inserts <paramref name="buffer"/> with its offset set.
    /// </summary>
    private bool TryPlaceInTreeUnsynchronized(ref Extent buffer)
    {
        Debug.Assert(_poolCount >= 1, "A split needs a spare extent.");
        Span<Extent> extents = _extents;
        var probe = new Extent { Size = buffer.Size, Offset = 0 };
        int fit = ExtentTree<BySizeOrder>.LowerBound(extents, _sizeRoot, in probe);
        if (fit == Nil)
        {
            return false;
        }

        _sizeRoot = ExtentTree<BySizeOrder>.Remove(extents, _sizeRoot, fit);
        ref Extent extent = ref extents[fit];
        if (extent.Size > buffer.Size)
        {
            int rest = TakeExtentUnsynchronized();
            ref Extent remainder = ref extents[rest];
            remainder = new Extent { Offset = extent.Offset + buffer.Size, Size = extent.Size - buffer.Size };
            remainder.Prev = fit;
            remainder.Next = extent.Next;
            if (extent.Next != Nil)
            {
                extents[extent.Next].Prev = rest;
            }
            extent.Next = rest;
            _sizeRoot = ExtentTree<BySizeOrder>.Insert(extents, _sizeRoot, rest);
        }

        buffer.Offset = extent.Offset;
        extent.Size = buffer.Size;
        extent.State = buffer.State;
        extent.Oneway = buffer.Oneway;
        extent.ClearOnFree = buffer.ClearOnFree;
        extent.SenderPid = buffer.SenderPid;
        extent.Sequence = buffer.Sequence;
        _offsetRoot = ExtentTree<ByOffsetOrder>.Insert(extents, _offsetRoot, fit);
        return true;
    }

    /// <summary>
    /// Marks the buffer extent free and merges it with a free next and a free previous extent (binder's abort), after
    /// saying where its live neighbours end and start. Free ranges are merged, so the extent beyond a free neighbour
    /// is live (or the area's edge).
    /// </summary>
    private void ReleaseFromTreeUnsynchronized(int node, out long offset, out long end, out bool oneway, out long previousLiveEnd, out long nextLiveStart)
    {
        Span<Extent> extents = _extents;
        _offsetRoot = ExtentTree<ByOffsetOrder>.Remove(extents, _offsetRoot, node);
        ref Extent extent = ref extents[node];
        offset = extent.Offset;
        end = extent.End;
        oneway = extent.Oneway;
        int previous = extent.Prev;
        int next = extent.Next;
        previousLiveEnd = previous == Nil ? 0 : extents[previous].IsLive ? extents[previous].End : extents[previous].Offset;
        nextLiveStart = next == Nil ? DataSize : extents[next].IsLive ? extents[next].Offset : extents[next].End;

        extent.State = ExtentState.Free;
        extent.Oneway = false;
        extent.ClearOnFree = false;
        extent.SenderPid = 0;
        extent.Sequence = 0;
        int merged = node;
        if (next != Nil && !extents[next].IsLive)
        {
            _sizeRoot = ExtentTree<BySizeOrder>.Remove(extents, _sizeRoot, next);
            extent.Size += extents[next].Size;
            UnlinkUnsynchronized(next);
            ReturnExtentUnsynchronized(next);
        }
        if (previous != Nil && !extents[previous].IsLive)
        {
            _sizeRoot = ExtentTree<BySizeOrder>.Remove(extents, _sizeRoot, previous);
            extents[previous].Size += extent.Size;
            UnlinkUnsynchronized(node);
            ReturnExtentUnsynchronized(node);
            merged = previous;
        }
        _sizeRoot = ExtentTree<BySizeOrder>.Insert(extents, _sizeRoot, merged);
    }

    /// <summary>Tree → Empty once the last buffer is gone: the single free extent goes back to the pool.</summary>
    private void ResetToEmptyUnsynchronized()
    {
        Debug.Assert(_first != Nil && _extents[_first].Next == Nil && !_extents[_first].IsLive, "One free extent covers the area.");
        ReturnExtentUnsynchronized(_first);
        _first = Nil;
        _sizeRoot = Nil;
        _offsetRoot = Nil;
        _mode = AllocatorMode.Empty;
    }

    private void UnlinkUnsynchronized(int node)
    {
        Span<Extent> extents = _extents;
        int previous = extents[node].Prev;
        int next = extents[node].Next;
        if (previous == Nil)
        {
            _first = next;
        }
        else
        {
            extents[previous].Next = next;
        }
        if (next != Nil)
        {
            extents[next].Prev = previous;
        }
    }

    private int TakeExtentUnsynchronized()
    {
        Debug.Assert(_pool != Nil, "Callers make sure the pool has enough extents before they start.");
        int node = _pool;
        _pool = _extents[node].Next;
        _poolCount--;
        return node;
    }

    private void ReturnExtentUnsynchronized(int node)
    {
        _extents[node] = new Extent { Next = _pool };
        _pool = node;
        _poolCount++;
    }

    /// <summary>Chains the extents from <paramref name="start"/> to the end of the pool array into the free list.</summary>
    private void AddToPoolUnsynchronized(int start)
    {
        for (int node = _extents.Length - 1; node >= start; node--)
        {
            _extents[node] = new Extent { Next = _pool };
            _pool = node;
            _poolCount++;
        }
    }

    /// <summary>
    /// Grows the pool now, if needed, so that <paramref name="extents"/> extents fit without growing it later: for an
    /// owner that knows its steady state needs that many (a writer's live and resting packs, and the free ranges between
    /// them), so the pool's growth does not happen on a hot path after warm-up. Call without the lock.
    /// </summary>
    internal void EnsurePoolCapacity(int extents)
    {
        int capacity;
        using (_lock.EnterScope())
        {
            capacity = _extents.Length;
        }
        if (capacity < extents)
        {
            GrowPool(capacity, extents - capacity);
        }
    }

    /// <summary>
    /// Grows the pool to hold at least <paramref name="needed"/> spare extents. Called without the lock: the new
    /// array is allocated first, and installed only if nobody grew the pool since we saw <paramref name="seenCapacity"/>.
    /// </summary>
    private void GrowPool(int seenCapacity, int needed)
    {
        var grown = new Extent[Math.Max(seenCapacity * 2, seenCapacity + needed)];
        using (_lock.EnterScope())
        {
            if (_extents.Length != seenCapacity)
            {
                return;
            }
            _extents.CopyTo(grown, 0);
            _extents = grown;
            AddToPoolUnsynchronized(seenCapacity);
        }
    }
}
