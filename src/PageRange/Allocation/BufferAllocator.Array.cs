namespace PageRange.Allocation;

/// <summary>Array mode: at most <see cref="TreeThreshold"/> live buffers, sorted by offset (binder's Rust <c>ArrayRangeAllocator</c>).</summary>
internal sealed partial class BufferAllocator
{
    /// <summary>
    /// Binder's array placement: right after the last buffer if the rest of the area fits, else the first gap from
    /// offset 0 that fits (first fit, not best fit). Inserts <paramref name="buffer"/> with its offset set.
    /// </summary>
    private bool TryPlaceInArrayUnsynchronized(ref Extent buffer)
    {
        long size = buffer.Size;
        long endOfLast = _arrayCount == 0 ? 0 : _array[_arrayCount - 1].End;
        int index = _arrayCount;
        if (DataSize - endOfLast >= size)
        {
            buffer.Offset = endOfLast;
        }
        else
        {
            long cursor = 0;
            index = 0;
            while (index < _arrayCount && _array[index].Offset - cursor < size)
            {
                cursor = _array[index].End;
                index++;
            }
            if (index == _arrayCount)
            {
                return false;
            }
            buffer.Offset = cursor;
        }

        Span<Extent> slots = _array;
        slots[index.._arrayCount].CopyTo(slots[(index + 1)..]);
        slots[index] = buffer;
        _arrayCount++;
        return true;
    }

    /// <summary>Removes the buffer in slot <paramref name="index"/> and says where its live neighbours end and start.</summary>
    private void ReleaseFromArrayUnsynchronized(int index, out long offset, out long end, out bool oneway, out long previousLiveEnd, out long nextLiveStart)
    {
        ref Extent buffer = ref _array[index];
        offset = buffer.Offset;
        end = buffer.End;
        oneway = buffer.Oneway;
        previousLiveEnd = index > 0 ? _array[index - 1].End : 0;
        nextLiveStart = index + 1 < _arrayCount ? _array[index + 1].Offset : DataSize;

        // An array never goes back to Empty, even when its last buffer leaves (binder's Rust allocator).
        Span<Extent> slots = _array;
        slots[(index + 1).._arrayCount].CopyTo(slots[index..]);
        _arrayCount--;
        slots[_arrayCount] = default;
    }
}
