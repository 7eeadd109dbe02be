using PageRange.Allocation;

namespace PageRange.Tests.Allocation;

/// <summary>
/// The simple model the property tests hold the allocator to: a sorted list of live buffers, binder's placement rules
/// written the obvious O(n) way, the oneway quota, C's spam latch, and which pages are backed.
/// </summary>
internal sealed class AllocatorModel
{
    internal AllocatorModel(long dataSize, int pageCount)
    {
        DataSize = dataSize;
        FreeOneway = dataSize / 2;
        Backed = new bool[pageCount];
    }

    internal enum Outcome
    {
        Reserved,
        TooLarge,
        Full,
    }

    internal long DataSize { get; }

    internal List<ModelBuffer> Live { get; } = [];

    internal AllocatorMode Mode { get; private set; }

    internal long FreeOneway { get; private set; }

    internal bool[] Backed { get; }

    internal long IgnoredFrees { get; set; }

    internal long FailedReservations { get; private set; }

    internal long SpamReports { get; private set; }

    private bool _spamLatch;

    internal static long Pad(long size) => Math.Max((size + 7) & ~7L, 8);

    /// <summary>Places a buffer as binder would and records it; says whether the C latch reports a spam suspect.</summary>
    internal Outcome Place(long size, bool oneway, bool clear, int pid, out long offset, out bool spam)
    {
        offset = -1;
        spam = false;
        long padded = Pad(size);
        if (padded > DataSize || (oneway && padded > DataSize / 2))
        {
            return Outcome.TooLarge;
        }
        if (oneway && FreeOneway < padded)
        {
            FailedReservations++;
            return Outcome.Full;
        }

        if (Mode == AllocatorMode.Empty || (Mode == AllocatorMode.Array && Live.Count < BufferAllocator.TreeThreshold))
        {
            // First fit, biased to append.
            long endOfLast = Live.Count == 0 ? 0 : Live[^1].End;
            if (DataSize - endOfLast >= padded)
            {
                offset = endOfLast;
            }
            else
            {
                offset = Gaps().Where(g => g.Size >= padded).Select(g => g.Offset).DefaultIfEmpty(-1).First();
            }
            if (offset < 0)
            {
                FailedReservations++;
                return Outcome.Full;
            }
            Mode = AllocatorMode.Array;
        }
        else
        {
            // Best fit: the smallest gap that fits, ties to the lowest offset.
            Mode = AllocatorMode.Tree;
            offset = Gaps().Where(g => g.Size >= padded).OrderBy(g => g.Size).ThenBy(g => g.Offset)
                .Select(g => g.Offset).DefaultIfEmpty(-1).First();
            if (offset < 0)
            {
                FailedReservations++;
                return Outcome.Full;
            }
        }

        var buffer = new ModelBuffer(offset, padded, oneway, clear, pid) { State = ExtentState.Reserved };
        Live.Add(buffer);
        Live.Sort((x, y) => x.Offset.CompareTo(y.Offset));
        if (oneway)
        {
            FreeOneway -= padded;
            if (FreeOneway >= DataSize / 10)
            {
                _spamLatch = false;
            }
            else
            {
                ModelBuffer[] mine = [.. Live.Where(b => b.Oneway && b.Pid == pid)];
                if ((mine.Length > BufferAllocator.SpamBufferThreshold || mine.Sum(b => b.Size) > DataSize / 4) && !_spamLatch)
                {
                    _spamLatch = true;
                    SpamReports++;
                    spam = true;
                }
            }
        }
        return Outcome.Reserved;
    }

    /// <summary>UseRange over the buffer's pages: backs them in order, stopping at the faulty page if it is not backed yet.</summary>
    internal bool Back(long offset, long size, int faultPage)
    {
        (int first, int end) = AllocatorHarness.Touched(offset, size);
        for (int page = first; page < end; page++)
        {
            if (!Backed[page])
            {
                if (page == faultPage)
                {
                    return false;
                }
                Backed[page] = true;
            }
        }
        return true;
    }

    internal void Release(ModelBuffer buffer)
    {
        Assert.True(Live.Remove(buffer));
        if (buffer.Oneway)
        {
            FreeOneway += buffer.Size;
        }
        if (Mode == AllocatorMode.Tree && Live.Count == 0)
        {
            Mode = AllocatorMode.Empty;
        }
    }

    /// <summary>A full Scan: every backed page no live buffer overlaps is reclaimed.</summary>
    internal int ScanAll()
    {
        int freed = 0;
        for (int page = 0; page < Backed.Length; page++)
        {
            if (Backed[page] && !AllocatorHarness.Overlapped(LiveRanges(), page))
            {
                Backed[page] = false;
                freed++;
            }
        }
        return freed;
    }

    internal IEnumerable<(long Offset, long Size)> LiveRanges() => Live.Select(b => (b.Offset, b.Size));

    internal List<(long Offset, long Size)> Gaps()
    {
        var gaps = new List<(long Offset, long Size)>();
        long cursor = 0;
        foreach (ModelBuffer buffer in Live)
        {
            if (buffer.Offset > cursor)
            {
                gaps.Add((cursor, buffer.Offset - cursor));
            }
            cursor = buffer.End;
        }
        if (cursor < DataSize)
        {
            gaps.Add((cursor, DataSize - cursor));
        }
        return gaps;
    }
}

internal sealed record ModelBuffer(long Offset, long Size, bool Oneway, bool Clear, int Pid)
{
    internal ExtentState State { get; set; }

    internal long End => Offset + Size;

    /// <summary>The non-zero byte the test writes into this buffer.</summary>
    internal byte Pattern => (byte)((Offset / 8 % 255) + 1);
}
