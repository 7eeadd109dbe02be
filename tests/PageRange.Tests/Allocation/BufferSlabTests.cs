using PageRange.Threading;
using PageRange.Allocation;
using PageRange.Memory;

namespace PageRange.Tests.Allocation;

/// <summary>A slab's slots go through a buffer's states; the set of slabs reserves and gives back whole buffers.</summary>
public sealed class BufferSlabTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void TryTake_EverySlot_LowestFirstThenFull()
    {
        var slab = new BufferSlab();
        slab.Open(4096);
        for (int slot = 0; slot < BufferSlab.SlotCount; slot++)
        {
            Assert.True(slab.TryTake(out long offset));
            Assert.Equal(4096 + ((long)slot * BufferSlab.SlotSize), offset);
        }
        Assert.False(slab.TryTake(out _));
        Assert.Equal(BufferSlab.SlotCount, slab.LiveSlots);
        // An aborted slot in the middle is the next one taken.
        slab.Abort(4096 + (5L * BufferSlab.SlotSize));
        Assert.True(slab.TryTake(out long again));
        Assert.Equal(4096 + (5L * BufferSlab.SlotSize), again);
    }

    [Fact]
    public void Free_DeliveredSlot_FreedOnceThenNotLive()
    {
        var slab = new BufferSlab();
        slab.Open(0);
        Assert.True(slab.TryTake(out long offset));
        slab.Commit(offset, sequence: 3);
        Assert.Equal(SlotFreeResult.Undelivered, slab.Free(offset, deliveredBefore: 3));
        Assert.Equal(SlotFreeResult.Freed, slab.Free(offset, deliveredBefore: 4));
        Assert.True(slab.IsEmpty);
        Assert.Equal(SlotFreeResult.NotLive, slab.Free(offset, deliveredBefore: 4));
    }

    [Theory]
    [InlineData(8)]
    [InlineData(BufferSlab.SlotSize - 8)]
    [InlineData(BufferSlab.SlotSize + 8)]
    public void Free_NotAtASlotsStart_NotASlot(long within)
    {
        var slab = new BufferSlab();
        slab.Open(0);
        Assert.True(slab.TryTake(out long first));
        Assert.True(slab.TryTake(out _));
        slab.Commit(first, 0);
        Assert.Equal(SlotFreeResult.NotASlot, slab.Free(within, deliveredBefore: 1));
        Assert.Equal(2, slab.LiveSlots);
    }

    [Fact]
    public void Free_ReservedSlotNeverPublished_NotLive()
    {
        var slab = new BufferSlab();
        slab.Open(0);
        Assert.True(slab.TryTake(out long offset));
        Assert.Equal(SlotFreeResult.NotLive, slab.Free(offset, deliveredBefore: ulong.MaxValue));
        Assert.Equal(1, slab.LiveSlots);
    }

    [Fact]
    public void CommitOrAbort_NotAReservedSlot_ThrowsInvalidOperation()
    {
        var slab = new BufferSlab();
        slab.Open(0);
        Assert.True(slab.TryTake(out long offset));
        Assert.Throws<InvalidOperationException>(() => slab.Commit(offset + 8, 0));
        Assert.Throws<InvalidOperationException>(() => slab.Commit(BufferSlab.SlotSize, 0));
        Assert.Throws<InvalidOperationException>(() => slab.Abort(BufferSlab.Bytes));
        slab.Commit(offset, 0);
        Assert.Throws<InvalidOperationException>(() => slab.Commit(offset, 1));
        Assert.Throws<InvalidOperationException>(() => slab.Abort(offset));
    }

    [Fact]
    public void Contains_OnlyTheSlabsBytes()
    {
        var slab = new BufferSlab();
        Assert.False(slab.Contains(0));
        slab.Open(8192);
        Assert.False(slab.Contains(8191));
        Assert.True(slab.Contains(8192));
        Assert.True(slab.Contains(8192 + BufferSlab.Bytes - 1));
        Assert.False(slab.Contains(8192 + BufferSlab.Bytes));
        Assert.False(slab.Contains(long.MinValue));
    }

    [Fact]
    public void Slabs_ReceiverKeepsUp_OneSlabReusedForEveryMessage()
    {
        using var harness = new SlabHarness(64);
        for (ulong sequence = 0; sequence < 10_000; sequence++)
        {
            long offset = harness.Send(sequence);
            Assert.Equal(SlotFreeResult.Freed, harness.Free(offset, sequence + 1));
        }
        Assert.Equal(1, harness.Slabs.SlabsOpened);
        Assert.Equal(1, harness.Slabs.SlabsInUse);
        Assert.Equal(1, harness.Allocator.BufferCount);
    }

    [Fact]
    public void Slabs_ReceiverBehind_OpensMoreThenGivesEachBackWhenDrained()
    {
        using var harness = new SlabHarness(256);
        var offsets = new List<long>();
        for (ulong sequence = 0; sequence < 3 * BufferSlab.SlotCount; sequence++)
        {
            offsets.Add(harness.Send(sequence));
        }
        Assert.Equal(3, harness.Slabs.SlabsInUse);
        Assert.Equal(3, harness.Allocator.BufferCount);
        long quotaWithSlabs = harness.Allocator.FreeOnewaySpace;
        Assert.Equal(harness.Allocator.OnewayQuota - (3 * BufferSlab.Bytes), quotaWithSlabs);

        // The first (full, no longer filled) slab goes back with its last free: its pages become Available.
        for (int i = 0; i < BufferSlab.SlotCount; i++)
        {
            Assert.Equal(SlotFreeResult.Freed, harness.Free(offsets[i], ulong.MaxValue));
        }
        Assert.Equal(2, harness.Slabs.SlabsInUse);
        Assert.Equal(1, harness.Slabs.SlabsReleased);
        int firstPage = (int)(offsets[0] / s_page);
        Assert.Equal(PageState.Available, harness.Pages.GetPageState(firstPage));

        // The rest: the one being filled stays (a stream keeps it) until the writer goes idle.
        for (int i = BufferSlab.SlotCount; i < offsets.Count; i++)
        {
            Assert.Equal(SlotFreeResult.Freed, harness.Free(offsets[i], ulong.MaxValue));
        }
        Assert.Equal(1, harness.Slabs.SlabsInUse);
        using (harness.Lock.EnterScope())
        {
            Assert.True(harness.Slabs.ReleaseIdle());
            Assert.False(harness.Slabs.ReleaseIdle());
        }
        Assert.Equal(0, harness.Slabs.SlabsInUse);
        Assert.Equal(0, harness.Allocator.BufferCount);
        Assert.Equal(harness.Allocator.OnewayQuota, harness.Allocator.FreeOnewaySpace);
        // Every page the three slabs backed is on the LRU now, for the shrinker to reclaim.
        Assert.Equal(3 * BufferSlab.Bytes / s_page, harness.Shrinker.Count());
        harness.Shrinker.Scan(long.MaxValue);
        Assert.Equal(0, harness.Region.ResidentBytes);
        harness.Allocator.Validate();
    }

    [Fact]
    public void Slabs_AllInUseAndFull_ReserveFailsSoTheMessageTakesABufferOfItsOwn()
    {
        using var harness = new SlabHarness(1024);
        int capacity = BufferSlabs.MaxSlabs * BufferSlab.SlotCount;
        for (ulong sequence = 0; sequence < (ulong)capacity; sequence++)
        {
            harness.Send(sequence);
        }
        Assert.Equal(BufferSlabs.MaxSlabs, harness.Slabs.SlabsInUse);
        using (harness.Lock.EnterScope())
        {
            Assert.False(harness.Slabs.TryReserveUnderLock(0, out _));
        }
    }

    [Fact]
    public void Slabs_SmallRegion_AtMostAQuarterOfTheOnewayQuota()
    {
        // 16 pages: a 32 KiB quota cannot hold four 16 KiB slabs, so there are none.
        using var harness = new SlabHarness(16);
        using (harness.Lock.EnterScope())
        {
            Assert.False(harness.Slabs.TryReserveUnderLock(0, out _));
        }
        Assert.Equal(0, harness.Allocator.BufferCount);
    }

    /// <summary>A real page range, an allocator with a shared lock, and the slabs over it; every call under the lock.</summary>
    private sealed class SlabHarness : IDisposable
    {
        internal SlabHarness(int pageCount)
        {
            Region = SharedRegion.Create("pagerange-slab-test", (long)pageCount * s_page);
            Pages = new ShrinkablePageRange(Region, 0, pageCount, Shrinker);
            Allocator = new BufferAllocator(Pages, new BufferAllocatorOptions { SharedLock = Lock });
            Slabs = new BufferSlabs(Allocator);
        }

        internal ThinLock Lock { get; } = new();

        internal Shrinker Shrinker { get; } = new();

        internal SharedRegion Region { get; }

        internal ShrinkablePageRange Pages { get; }

        internal BufferAllocator Allocator { get; }

        internal BufferSlabs Slabs { get; }

        /// <summary>Takes a slot and commits it at ring position <paramref name="sequence"/>.</summary>
        internal long Send(ulong sequence)
        {
            using (Lock.EnterScope())
            {
                Assert.True(Slabs.TryReserveUnderLock(0, out long offset));
                Slabs.Find(offset)!.Commit(offset, sequence);
                return offset;
            }
        }

        internal SlotFreeResult Free(long offset, ulong deliveredBefore)
        {
            using (Lock.EnterScope())
            {
                return Slabs.FreeUnderLock(Slabs.Find(offset)!, offset, deliveredBefore);
            }
        }

        public void Dispose()
        {
            Pages.Dispose();
            Region.Dispose();
        }
    }
}
