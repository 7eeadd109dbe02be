namespace PageRange.Allocation;

/// <summary>Read-only views of the bookkeeping for tests.</summary>
internal sealed partial class BufferAllocator
{
    /// <summary>
    /// The free ranges as the allocator keeps them, in address order: in tree mode the free extents themselves (so a
    /// missed merge shows up as two touching ranges), otherwise the gaps between live buffers.
    /// </summary>
    internal (long Offset, long Size)[] GetFreeRanges()
    {
        while (true)
        {
            int capacity = BufferCount + 1;
            var ranges = new (long Offset, long Size)[capacity];
            int count = 0;
            using (_lock.EnterScope())
            {
                if (_bufferCount + 1 > capacity)
                {
                    continue;
                }
                if (_mode == AllocatorMode.Tree)
                {
                    for (int node = _first; node != Nil; node = _extents[node].Next)
                    {
                        if (!_extents[node].IsLive)
                        {
                            ranges[count++] = (_extents[node].Offset, _extents[node].Size);
                        }
                    }
                }
                else
                {
                    long cursor = 0;
                    for (int i = 0; i < _arrayCount; i++)
                    {
                        if (_array[i].Offset > cursor)
                        {
                            ranges[count++] = (cursor, _array[i].Offset - cursor);
                        }
                        cursor = _array[i].End;
                    }
                    if (cursor < DataSize)
                    {
                        ranges[count++] = (cursor, DataSize - cursor);
                    }
                }
            }
            return ranges[..count];
        }
    }

    /// <summary>Checks every internal invariant of the bookkeeping.</summary>
    /// <exception cref="InvalidOperationException">An invariant does not hold; the message says which.</exception>
    internal void Validate()
    {
        using (_lock.EnterScope())
        {
            long onewayBytes = 0;
            int live = 0;
            int inList = 0;
            switch (_mode)
            {
                case AllocatorMode.Empty:
                    Require(_arrayCount == 0 && _first == Nil && _offsetRoot == Nil && _sizeRoot == Nil, "Empty mode keeps no extents.");
                    break;
                case AllocatorMode.Array:
                    Require(_first == Nil && _offsetRoot == Nil && _sizeRoot == Nil, "Array mode keeps no tree.");
                    Require(_arrayCount <= TreeThreshold, "The array holds at most 8 buffers.");
                    long end = 0;
                    for (int i = 0; i < _arrayCount; i++)
                    {
                        ref Extent buffer = ref _array[i];
                        CheckBuffer(in buffer);
                        Require(buffer.Offset >= end, $"Array slot {i} at {buffer.Offset} overlaps or precedes the one before, which ends at {end}.");
                        end = buffer.End;
                        live++;
                        onewayBytes += buffer.Oneway ? buffer.Size : 0;
                    }
                    Require(end <= DataSize, "The last buffer ends inside the area.");
                    break;
                default:
                    Require(_arrayCount == 0, "Tree mode keeps no array.");
                    int free = 0;
                    long cursor = 0;
                    int previous = Nil;
                    bool previousFree = false;
                    for (int node = _first; node != Nil; node = _extents[node].Next)
                    {
                        ref Extent extent = ref _extents[node];
                        Require(extent.Offset == cursor, $"Extent {node} starts at {extent.Offset}, not at {cursor} where the one before ends.");
                        Require(extent.Prev == previous, $"Extent {node} links back to {extent.Prev}, not {previous}.");
                        Require(extent.Size > 0 && extent.Size % Alignment == 0, $"Extent {node} has size {extent.Size}.");
                        if (extent.IsLive)
                        {
                            CheckBuffer(in extent);
                            var probe = new Extent { Offset = extent.Offset };
                            Require(ExtentTree<ByOffsetOrder>.Find(_extents, _offsetRoot, in probe) == node, $"Buffer {node} is not in the offset tree.");
                            live++;
                            onewayBytes += extent.Oneway ? extent.Size : 0;
                        }
                        else
                        {
                            Require(!previousFree, $"Free extent {node} at {extent.Offset} touches the free extent before it.");
                            Require(ExtentTree<BySizeOrder>.Find(_extents, _sizeRoot, in extent) == node, $"Free extent {node} is not in the size tree.");
                            free++;
                        }
                        previousFree = !extent.IsLive;
                        cursor = extent.End;
                        previous = node;
                        inList++;
                        Require(inList <= _extents.Length, "The address list has a cycle.");
                    }
                    Require(cursor == DataSize, $"The extents end at {cursor}, not at the end of the area.");
                    Require(ExtentTree<ByOffsetOrder>.Validate(_extents, _offsetRoot) == live, "The offset tree holds exactly the live buffers.");
                    Require(ExtentTree<BySizeOrder>.Validate(_extents, _sizeRoot) == free, "The size tree holds exactly the free extents.");
                    Require(live > 0, "A tree with no buffer goes back to Empty.");
                    break;
            }

            int pooled = 0;
            for (int node = _pool; node != Nil; node = _extents[node].Next)
            {
                pooled++;
                Require(pooled <= _extents.Length, "The pool's free list has a cycle.");
            }
            Require(pooled == _poolCount && pooled + inList == _extents.Length, $"Pool: {pooled} free, {_poolCount} counted, {inList} in use of {_extents.Length}.");
            Require(live == _bufferCount, $"{live} live buffers, but {_bufferCount} counted.");
            Require(_freeOnewaySpace == OnewayQuota - onewayBytes, $"Free oneway space {_freeOnewaySpace}, expected {OnewayQuota} - {onewayBytes}.");
        }

        static void CheckBuffer(in Extent buffer) =>
            Require(
                buffer.IsLive && buffer.Size >= MinimumSize && buffer.Size % Alignment == 0 && buffer.Offset % Alignment == 0,
                $"Buffer at {buffer.Offset} of size {buffer.Size} in state {buffer.State} is malformed.");

        static void Require(bool condition, string message)
        {
            if (!condition)
            {
                throw new InvalidOperationException(message);
            }
        }
    }
}
