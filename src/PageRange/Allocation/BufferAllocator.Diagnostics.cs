using System.Globalization;
using System.Text;

namespace PageRange.Allocation;

/// <summary>Stats and the text dump (binder's proc stats, <c>print_allocated</c> and <c>print_pages</c>).</summary>
internal sealed partial class BufferAllocator
{
    /// <summary>A consistent snapshot of the bookkeeping, then the page range's counts.</summary>
    /// <remarks>O(live buffers); allocates nothing.</remarks>
    internal BufferAllocatorStats GetStats()
    {
        BufferAllocatorStats stats;
        using (_lock.EnterScope())
        {
            stats = ComputeStatsUnsynchronized();
        }
        // The page range keeps its own consistent snapshot under its own lock.
        return stats with { Pages = _pages.GetStats() };
    }

    /// <summary>The live buffers in address order, for the dump and for tests.</summary>
    internal BufferInfo[] GetBuffers() => Snapshot(out _);

    /// <summary>
    /// Binder's debug output: free oneway space, buffer count, one line per buffer
    /// (<c>buffer: &lt;offset&gt; size &lt;n&gt; pid &lt;pid&gt;[ oneway] reserved|allocated</c>),
    /// <c>pages: used:available:free</c>, the high-water mark and the allocated/free summary.
    /// </summary>
    internal string DumpState()
    {
        BufferInfo[] buffers = Snapshot(out BufferAllocatorStats stats);
        CultureInfo invariant = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        text.AppendLine(invariant, $"  mode: {stats.Mode}, data size: {stats.DataSize}");
        text.AppendLine(invariant, $"  free oneway space: {stats.FreeOnewaySpace}");
        text.AppendLine(invariant, $"  buffers: {stats.BufferCount}");
        foreach (BufferInfo buffer in buffers)
        {
            text.AppendLine(invariant, $"  {buffer}");
        }
        text.AppendLine(invariant, $"  pages: {stats.Pages.Used}:{stats.Pages.Available}:{stats.Pages.Free}");
        text.AppendLine(invariant, $"  pages high watermark: {stats.Pages.HighWaterMark}");
        text.AppendLine(invariant, $"  {stats.Summary}");
        text.AppendLine(invariant, $"  ignored frees: {stats.IgnoredFrees}, failed reservations: {stats.FailedReservations}, oneway spam reports: {stats.OnewaySpamReports}");
        return text.ToString();
    }

    /// <summary>
    /// Copies the live buffers and the stats under one hold of the lock. The array is allocated before the lock is
    /// taken; if buffers were added meanwhile it is too small, and we try again with a larger one.
    /// </summary>
    private BufferInfo[] Snapshot(out BufferAllocatorStats stats)
    {
        int capacity = BufferCount;
        while (true)
        {
            var buffers = new BufferInfo[capacity];
            int count;
            stats = default;
            using (_lock.EnterScope())
            {
                count = _bufferCount;
                if (count <= capacity)
                {
                    int i = 0;
                    for (int index = FirstLiveUnsynchronized(); index != Nil; index = NextLiveUnsynchronized(index))
                    {
                        ref Extent buffer = ref LiveUnsynchronized(index);
                        buffers[i++] = new BufferInfo(buffer.Offset, buffer.Size, buffer.State, buffer.Oneway, buffer.ClearOnFree, buffer.SenderPid);
                    }
                    stats = ComputeStatsUnsynchronized();
                }
            }
            if (count <= capacity)
            {
                stats = stats with { Pages = _pages.GetStats() };
                return count == capacity ? buffers : buffers[..count];
            }
            capacity = count + TreeThreshold;
        }
    }

    /// <summary>Walks the live buffers; the gaps between them are the free ranges (merged, so one gap is one range).</summary>
    private BufferAllocatorStats ComputeStatsUnsynchronized()
    {
        int reserved = 0;
        int allocated = 0;
        int oneway = 0;
        long bufferBytes = 0;
        long largestBuffer = 0;
        int freeRanges = 0;
        long freeBytes = 0;
        long largestFree = 0;
        long cursor = 0;
        for (int index = FirstLiveUnsynchronized(); index != Nil; index = NextLiveUnsynchronized(index))
        {
            ref Extent buffer = ref LiveUnsynchronized(index);
            CountGap(buffer.Offset - cursor, ref freeRanges, ref freeBytes, ref largestFree);
            if (buffer.State == ExtentState.Allocated)
            {
                allocated++;
            }
            else
            {
                reserved++;
            }
            if (buffer.Oneway)
            {
                oneway++;
            }
            bufferBytes += buffer.Size;
            largestBuffer = Math.Max(largestBuffer, buffer.Size);
            cursor = buffer.End;
        }
        CountGap(DataSize - cursor, ref freeRanges, ref freeBytes, ref largestFree);

        return new BufferAllocatorStats(
            _mode, DataSize, _bufferCount, reserved, allocated, bufferBytes, largestBuffer, freeBytes, freeRanges, largestFree,
            _freeOnewaySpace, oneway, _ignoredFrees, _failedReservations, _onewaySpamReports, Pages: default);

        static void CountGap(long gap, ref int ranges, ref long bytes, ref long largest)
        {
            if (gap > 0)
            {
                ranges++;
                bytes += gap;
                largest = Math.Max(largest, gap);
            }
        }
    }
}
