using PageRange.Allocation;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Allocation;

public sealed class BufferAllocatorTests
{
    private static readonly int s_page = AllocatorHarness.Page;

    [Theory]
    [InlineData(0, 8)]
    [InlineData(1, 8)]
    [InlineData(7, 8)]
    [InlineData(8, 8)]
    [InlineData(9, 16)]
    [InlineData(4095, 4096)]
    [InlineData(long.MaxValue - 7, long.MaxValue - 7)]
    public void PadSize_RoundsUpTo8WithMinimum8(long size, long padded) =>
        Assert.Equal(padded, BufferAllocator.PadSize(size));

    [Fact]
    public void Reserve_ZeroSize_TakesEightBytesAtDistinctOffsets()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long[] offsets = [.. Enumerable.Range(0, 4).Select(_ => allocator.Reserve(0, oneway: false))];

        Assert.Equal([0L, 8, 16, 24], offsets);
        Assert.All(allocator.GetBuffers(), b => Assert.Equal(8, b.Size));
        Assert.Equal(PageState.Used, harness.Pages.GetPageState(0));
        Assert.Equal(32, allocator.Reserve(0, oneway: true));
        Assert.Equal(allocator.OnewayQuota - 8, allocator.FreeOnewaySpace);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(long.MinValue)]
    [InlineData(long.MaxValue)]
    [InlineData(long.MaxValue - 6)]
    public void Reserve_NegativeOrOverflowingSize_ThrowsArgumentOutOfRange(long size)
    {
        using var harness = new AllocatorHarness(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => harness.Allocator.Reserve(size, oneway: false));
        Assert.Throws<ArgumentOutOfRangeException>(() => harness.Allocator.TryReserve(size, oneway: true, clearOnFree: false, senderPid: 0, out _));
        Assert.Equal(0, harness.Allocator.BufferCount);
    }

    [Fact]
    public void Reserve_LargerThanDataArea_ThrowsMessageTooLarge_ExactFitSucceeds()
    {
        using var harness = new AllocatorHarness(2);
        BufferAllocator allocator = harness.Allocator;
        long size = allocator.DataSize;

        var tooLarge = Assert.Throws<MessageTooLargeException>(() => allocator.Reserve(size + 1, oneway: false));
        Assert.Equal(size + 1, tooLarge.Size);
        Assert.Equal(size, tooLarge.Limit);
        Assert.Throws<MessageTooLargeException>(() => allocator.TryReserve(long.MaxValue - 7, false, false, 0, out _));

        Assert.Equal(0, allocator.Reserve(size - 7, oneway: false));
        Assert.Equal([PageState.Used, PageState.Used], harness.PageStates());
        // Full now, but a message of the whole area still "can fit later": the caller must be able to tell.
        Assert.Throws<RegionFullException>(() => allocator.Reserve(size, oneway: false));
    }

    [Fact]
    public void Reserve_OnewayLargerThanQuota_ThrowsMessageTooLarge_ExactQuotaSucceeds()
    {
        using var harness = new AllocatorHarness(2);
        BufferAllocator allocator = harness.Allocator;
        long quota = allocator.OnewayQuota;
        Assert.Equal(allocator.DataSize / 2, quota);

        var tooLarge = Assert.Throws<MessageTooLargeException>(() => allocator.Reserve(quota + 1, oneway: true));
        Assert.Equal(quota, tooLarge.Limit);
        // The same size is fine for a sync message.
        long sync = allocator.Reserve(quota + 1, oneway: false);
        allocator.Abort(sync);

        long offset = allocator.Reserve(quota, oneway: true);
        Assert.Equal(0, allocator.FreeOnewaySpace);
        allocator.Commit(offset);
        Assert.True(allocator.Free(offset));
        Assert.Equal(quota, allocator.FreeOnewaySpace);
    }

    [Fact]
    public void Reserve_NoRangeFits_ThrowsRegionFull_TryReserveReturnsFalse_AndLogsSummary()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long first = allocator.Reserve(s_page - 16, oneway: false);
        allocator.Reserve(8, oneway: false);

        Assert.False(allocator.TryReserve(16, oneway: false, clearOnFree: false, senderPid: 0, out _));
        Assert.Empty(harness.LogLines);
        var full = Assert.Throws<RegionFullException>(() => allocator.Reserve(16, oneway: false));
        Assert.Contains($"allocated: {s_page - 8} (num: 2 largest: {s_page - 16}), free: 8 (num: 1 largest: 8)", full.Message, StringComparison.Ordinal);
        Assert.Contains(harness.LogLines, l => l.StartsWith("no address space", StringComparison.Ordinal));
        Assert.Equal(2, allocator.GetStats().FailedReservations);

        // 8 bytes still fit; once a buffer goes, 16 do too.
        Assert.True(allocator.TryReserve(8, false, false, 0, out long last));
        Assert.Equal(s_page - 8, last);
        allocator.Abort(first);
        Assert.Equal(0, allocator.Reserve(16, oneway: false));
    }

    [Fact]
    public void Reserve_OnewayQuotaLeftTooSmall_ThrowsRegionFullBeforeSearching_SyncStillFits()
    {
        using var harness = new AllocatorHarness(4);
        BufferAllocator allocator = harness.Allocator;
        long quota = allocator.OnewayQuota;
        allocator.Reserve(quota - 16, oneway: true);

        // 16 bytes of quota left: 17 pads to 24 and fails on the quota, though the area has room.
        var full = Assert.Throws<RegionFullException>(() => allocator.Reserve(17, oneway: true));
        Assert.Contains("oneway quota", full.Message, StringComparison.Ordinal);
        Assert.False(allocator.TryReserve(17, true, false, 0, out _));
        Assert.Equal(16, allocator.FreeOnewaySpace);

        // Sync buffers are not limited by the quota.
        allocator.Reserve(quota / 2, oneway: false);

        // Exactly what is left fits, and the quota reaches 0.
        long small = allocator.Reserve(9, oneway: true);
        Assert.Equal(0, allocator.FreeOnewaySpace);
        Assert.Throws<RegionFullException>(() => allocator.Reserve(0, oneway: true));

        // A free returns exactly the padded size that was charged.
        allocator.Abort(small);
        Assert.Equal(16, allocator.FreeOnewaySpace);
    }

    [Fact]
    public void Commit_NotReserved_Throws()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long offset = allocator.Reserve(10, oneway: false);
        allocator.Commit(offset);

        Assert.Throws<InvalidOperationException>(() => allocator.Commit(offset));
        Assert.Throws<InvalidOperationException>(() => allocator.Commit(offset + 8));
        Assert.Throws<InvalidOperationException>(() => allocator.Commit(-8));
        Assert.Equal(ExtentState.Allocated, allocator.GetBuffers().Single().State);
    }

    [Fact]
    public void Abort_AllocatedOrUnknown_Throws_AndLeavesBufferLive()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long offset = allocator.Reserve(10, oneway: false);
        allocator.Commit(offset);

        Assert.Throws<InvalidOperationException>(() => allocator.Abort(offset));
        Assert.Contains(harness.LogLines, l => l.Contains("abort of the delivered buffer", StringComparison.Ordinal));
        Assert.Throws<InvalidOperationException>(() => allocator.Abort(offset + 16));
        Assert.Equal(1, allocator.BufferCount);

        long reserved = allocator.Reserve(10, oneway: false);
        allocator.Abort(reserved);
        Assert.Throws<InvalidOperationException>(() => allocator.Abort(reserved));
    }

    [Fact]
    public void Free_UnknownUndeliveredOrDouble_IgnoredLoggedAndCounted()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long delivered = allocator.Reserve(10, oneway: false);
        allocator.Commit(delivered);
        long undelivered = allocator.Reserve(10, oneway: true);

        Assert.False(allocator.Free(undelivered));
        Assert.False(allocator.Free(4));
        Assert.False(allocator.Free(-1));
        Assert.False(allocator.Free(allocator.DataSize));
        Assert.True(allocator.Free(delivered));
        Assert.False(allocator.Free(delivered));

        Assert.Equal(5, allocator.IgnoredFrees);
        Assert.Equal(5, allocator.GetStats().IgnoredFrees);
        string[] log = harness.LogLines;
        Assert.Contains(log, l => l.Contains("never delivered", StringComparison.Ordinal));
        Assert.Equal(4, log.Count(l => l.Contains("no buffer starts there", StringComparison.Ordinal)));

        // The undelivered buffer was not touched: it can still be delivered and freed.
        allocator.Commit(undelivered);
        Assert.True(allocator.Free(undelivered));
        Assert.Equal(allocator.OnewayQuota, allocator.FreeOnewaySpace);
        allocator.Validate();
    }

    [Fact]
    public void Mode_NinthLiveBuffer_SwitchesArrayToTree_TreeEmptiesToEmpty_ArrayNeverDoes()
    {
        using var harness = new AllocatorHarness(4);
        BufferAllocator allocator = harness.Allocator;
        Assert.Equal(AllocatorMode.Empty, allocator.Mode);

        var offsets = new List<long>();
        for (int i = 0; i < BufferAllocator.TreeThreshold; i++)
        {
            offsets.Add(allocator.Reserve(100, oneway: i % 2 == 0));
            Assert.Equal(AllocatorMode.Array, allocator.Mode);
        }
        allocator.Validate();
        offsets.Add(allocator.Reserve(100, oneway: false));
        Assert.Equal(AllocatorMode.Tree, allocator.Mode);
        allocator.Validate();
        // The conversion kept every buffer, its state and the oneway charge.
        Assert.Equal(offsets, allocator.GetBuffers().Select(b => b.Offset));
        Assert.Equal(allocator.OnewayQuota - (4 * 104), allocator.FreeOnewaySpace);

        // Dropping back to eight buffers keeps the tree; the last free empties it.
        foreach (long offset in offsets)
        {
            Assert.Equal(AllocatorMode.Tree, allocator.Mode);
            allocator.Abort(offset);
            allocator.Validate();
        }
        Assert.Equal(AllocatorMode.Empty, allocator.Mode);
        Assert.Equal([(0L, allocator.DataSize)], allocator.GetFreeRanges());

        // An array that empties stays an array.
        long only = allocator.Reserve(8, oneway: false);
        Assert.Equal(AllocatorMode.Array, allocator.Mode);
        allocator.Abort(only);
        Assert.Equal(AllocatorMode.Array, allocator.Mode);
        Assert.Equal(0, allocator.Reserve(8, oneway: false));
    }

    [Fact]
    public void Mode_NinthReservationThatDoesNotFit_StillConvertsToTree()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        for (int i = 0; i < BufferAllocator.TreeThreshold; i++)
        {
            allocator.Reserve(s_page / 8, oneway: false);
        }
        Assert.Throws<RegionFullException>(() => allocator.Reserve(8, oneway: false));
        Assert.Equal(AllocatorMode.Tree, allocator.Mode);
        Assert.Empty(allocator.GetFreeRanges());
        allocator.Validate();
    }

    [Fact]
    public void ArrayPlacement_AppendsAfterLastBuffer_ElseFirstGapFromZero()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long a = allocator.Reserve(64, false);
        Assert.Equal(64, allocator.Reserve(32, false));
        long c = allocator.Reserve(32, false);
        Assert.Equal(128, allocator.Reserve(16, false));
        allocator.Abort(a);
        allocator.Abort(c);
        // Holes: [0,64) and [96,128). Room at the end too, so the bias to append wins over both holes.
        Assert.Equal(144, allocator.Reserve(16, false));

        // Fill the tail. Now the first hole from 0 that fits is taken, not the best-fitting one at 96.
        Assert.Equal(160, allocator.Reserve(s_page - 160, false));
        Assert.Equal(0, allocator.Reserve(24, false));
        Assert.Equal(24, allocator.Reserve(40, false));
        Assert.Equal(96, allocator.Reserve(8, false));
        Assert.Equal(AllocatorMode.Array, allocator.Mode);
        Assert.Throws<RegionFullException>(() => allocator.Reserve(32, false));
    }

    [Fact]
    public void TreePlacement_BestFit_TiesToLowestOffset_RemainderStaysRightAfter()
    {
        using var harness = new AllocatorHarness(2);
        BufferAllocator allocator = harness.Allocator;
        // Ten buffers: 0:64 | 64:8 | 72:32 | 104:8 | 112:32 | 144:8 | 152:48 | 200:8 | 208:8 | 216:8, then free space.
        long[] sizes = [64, 8, 32, 8, 32, 8, 48, 8, 8, 8];
        long[] offsets = [.. sizes.Select(s => allocator.Reserve(s, false))];
        Assert.Equal(AllocatorMode.Tree, allocator.Mode);
        allocator.Abort(offsets[0]);
        allocator.Abort(offsets[2]);
        allocator.Abort(offsets[4]);
        allocator.Abort(offsets[6]);
        // Free ranges: [0,64) [72,104) [112,144) [152,200) [224,end).

        // 24 fits best in a 32-byte range; the two tie, and the lower one wins. Its remainder [96,104) stays free.
        Assert.Equal(72, allocator.Reserve(24, false));
        Assert.Contains((96L, 8L), allocator.GetFreeRanges());
        // 8 now fits best in that remainder.
        Assert.Equal(96, allocator.Reserve(8, false));
        Assert.Equal(112, allocator.Reserve(32, false));
        // 40 fits best in the 48-byte range, not the 64-byte one at 0 nor the tail.
        Assert.Equal(152, allocator.Reserve(40, false));
        Assert.Equal(0, allocator.Reserve(56, false));
        allocator.Validate();
    }

    [Fact]
    public void Free_NeighboursMerge_OneRangeCoversAreaAfterAllFreed()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        long[] offsets = [.. Enumerable.Range(0, 12).Select(_ => allocator.Reserve(40, false))];
        foreach (long offset in offsets)
        {
            allocator.Commit(offset);
        }
        // Free every other one, then the rest: each free merges with both free neighbours.
        foreach (long offset in offsets.Where((_, i) => i % 2 == 1).Concat(offsets.Where((_, i) => i % 2 == 0)))
        {
            Assert.True(allocator.Free(offset));
            allocator.Validate();
            (long Offset, long Size)[] free = allocator.GetFreeRanges();
            for (int i = 1; i < free.Length; i++)
            {
                Assert.True(free[i - 1].Offset + free[i - 1].Size < free[i].Offset);
            }
        }
        Assert.Equal([(0L, allocator.DataSize)], allocator.GetFreeRanges());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Free_ClearOnFree_ReusedBufferReadsZero_WithoutIt_OldBytesRemain(bool clearOnFree)
    {
        using var harness = new AllocatorHarness(2);
        BufferAllocator allocator = harness.Allocator;
        long neighbour = allocator.Reserve(100, false);
        long offset = allocator.Reserve(s_page + 100, false, clearOnFree);
        harness.Pages.GetSpan(neighbour, 104).Fill(0x11);
        harness.Pages.GetSpan(offset, s_page + 104).Fill(0xAB);
        allocator.Commit(offset);
        Assert.True(allocator.Free(offset));

        // Binder reuses pages from the LRU as they are, so only clear-on-free hides the old bytes.
        Assert.Equal(offset, allocator.Reserve(s_page + 100, false));
        byte[] reused = harness.Pages.GetSpan(offset, s_page + 104).ToArray();
        Assert.All(reused, b => Assert.Equal(clearOnFree ? 0 : 0xAB, b));
        // The neighbour that shares the first page is untouched.
        Assert.All(harness.Pages.GetSpan(neighbour, 104).ToArray(), b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void Abort_ClearOnFree_ZeroesTheBuffer()
    {
        using var harness = new AllocatorHarness(1);
        BufferAllocator allocator = harness.Allocator;
        allocator.Reserve(8, false);
        long offset = allocator.Reserve(64, oneway: true, clearOnFree: true);
        harness.Pages.GetSpan(offset, 64).Fill(0xCD);
        allocator.Abort(offset);
        Assert.True(harness.Region.GetSpan(offset, 64).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(allocator.OnewayQuota, allocator.FreeOnewaySpace);
    }

    [Fact]
    public void Reserve_BackingFails_RollsBackReservation_NoPageStaysUsed()
    {
        using var harness = new AllocatorHarness(6);
        BufferAllocator allocator = harness.Allocator;
        long neighbour = allocator.Reserve(100, oneway: false);
        harness.Region.AllocationFaultInjector = offset => offset == 2L * s_page;

        // [104, 104 + 3P) touches pages 0..3; page 0 is already Used, 1 gets backed, 2 fails.
        var error = Assert.Throws<BackingAllocationException>(() => allocator.Reserve(3L * s_page, oneway: true));
        Assert.Equal("fallocate", error.SystemCall);

        Assert.Equal(1, allocator.BufferCount);
        Assert.Equal(allocator.OnewayQuota, allocator.FreeOnewaySpace);
        Assert.Equal([(104L, allocator.DataSize - 104)], allocator.GetFreeRanges());
        // The neighbour keeps the shared page Used; the page backed before the failure is Available, the rest Free.
        Assert.Equal([PageState.Used, PageState.Available, PageState.Free, PageState.Free, PageState.Free, PageState.Free], harness.PageStates());
        Assert.Equal(2L * s_page, harness.Region.ResidentBytes);
        allocator.Validate();

        harness.Region.AllocationFaultInjector = null;
        Assert.Equal(104, allocator.Reserve(3L * s_page, oneway: true));
        Assert.Equal([PageState.Used, PageState.Used, PageState.Used, PageState.Used, PageState.Free, PageState.Free], harness.PageStates());
        _ = neighbour;
    }

    [Fact]
    public void Reserve_BackingFailsInTreeMode_RollsBack()
    {
        using var harness = new AllocatorHarness(4);
        BufferAllocator allocator = harness.Allocator;
        for (int i = 0; i < BufferAllocator.TreeThreshold; i++)
        {
            allocator.Reserve(8, oneway: false);
        }
        harness.Region.AllocationFaultInjector = offset => offset == 3L * s_page;
        Assert.Throws<BackingAllocationException>(() => allocator.Reserve(3L * s_page, oneway: false));
        Assert.Equal(AllocatorMode.Tree, allocator.Mode);
        Assert.Equal(8, allocator.BufferCount);
        Assert.Equal([PageState.Used, PageState.Available, PageState.Available, PageState.Free], harness.PageStates());
        allocator.Validate();
    }

    [Fact]
    public void Stats_AndDump_ShowBindersFields()
    {
        using var harness = new AllocatorHarness(4);
        BufferAllocator allocator = harness.Allocator;
        long a = allocator.Reserve(5, oneway: true, senderPid: 7);
        long b = allocator.Reserve(s_page, oneway: false, clearOnFree: true, senderPid: 9);
        allocator.Commit(b);
        allocator.Free(12345);

        BufferAllocatorStats stats = allocator.GetStats();
        Assert.Equal(AllocatorMode.Array, stats.Mode);
        Assert.Equal(2, stats.BufferCount);
        Assert.Equal(1, stats.ReservedBuffers);
        Assert.Equal(1, stats.AllocatedBuffers);
        Assert.Equal(1, stats.OnewayBuffers);
        Assert.Equal(8 + s_page, stats.BufferBytes);
        Assert.Equal(s_page, stats.LargestBuffer);
        Assert.Equal(allocator.DataSize - 8 - s_page, stats.FreeBytes);
        Assert.Equal(1, stats.FreeRanges);
        Assert.Equal(stats.FreeBytes, stats.LargestFreeRange);
        Assert.Equal(allocator.OnewayQuota - 8, stats.FreeOnewaySpace);
        Assert.Equal(1, stats.IgnoredFrees);
        Assert.Equal(new PageRangeStats(2, 0, 2, 2, 2L * s_page), stats.Pages);

        string dump = allocator.DumpState();
        Assert.Contains($"free oneway space: {allocator.OnewayQuota - 8}", dump, StringComparison.Ordinal);
        Assert.Contains("buffers: 2", dump, StringComparison.Ordinal);
        Assert.Contains($"buffer: {a} size 8 pid 7 oneway reserved", dump, StringComparison.Ordinal);
        Assert.Contains($"buffer: {b} size {s_page} pid 9 allocated clear-on-free", dump, StringComparison.Ordinal);
        Assert.Contains("pages: 2:0:2", dump, StringComparison.Ordinal);
        Assert.Contains("pages high watermark: 2", dump, StringComparison.Ordinal);
        Assert.Contains($"allocated: {8 + s_page} (num: 2 largest: {s_page}), free: {stats.FreeBytes} (num: 1 largest: {stats.FreeBytes})", dump, StringComparison.Ordinal);
        Assert.Contains("ignored frees: 1", dump, StringComparison.Ordinal);
    }

    [Fact]
    public void SteadyState_ReserveCommitFree_AllocatesNothing()
    {
        using var harness = new AllocatorHarness(64);
        BufferAllocator allocator = harness.Allocator;
        // Array mode first, then a tree with a few hundred live buffers (so the pool has grown once and for all).
        Assert.Equal(0, MeasureAllocatedBytes(allocator));
        for (int i = 0; i < 300; i++)
        {
            allocator.Reserve(200, oneway: i % 3 == 0);
        }
        Assert.Equal(AllocatorMode.Tree, allocator.Mode);
        Assert.Equal(0, MeasureAllocatedBytes(allocator));
    }

    private static long MeasureAllocatedBytes(BufferAllocator allocator)
    {
        static void Round(BufferAllocator allocator, int count)
        {
            for (int i = 0; i < count; i++)
            {
                bool oneway = (i & 1) == 0;
                long offset = allocator.Reserve(100 + (i % 5 * 1000), oneway, clearOnFree: (i & 2) == 0, senderPid: 1);
                allocator.Commit(offset);
                allocator.Free(offset);
                Assert.True(allocator.TryReserve(64, oneway, false, 1, out offset));
                allocator.Abort(offset);
            }
        }

        Round(allocator, 2000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Round(allocator, 2000);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void ManyBuffers_PoolGrowsOutsideLock_AndShrinksBackToEmpty()
    {
        using var harness = new AllocatorHarness(8);
        BufferAllocator allocator = harness.Allocator;
        var offsets = new List<long>();
        while (allocator.TryReserve(8, oneway: false, clearOnFree: false, senderPid: 0, out long offset))
        {
            offsets.Add(offset);
        }
        Assert.Equal(allocator.DataSize / 8, offsets.Count);
        allocator.Validate();
        // Free in an order that makes many separate free ranges before they merge.
        foreach (long offset in offsets.Where((_, i) => i % 3 == 0).Concat(offsets.Where((_, i) => i % 3 != 0)))
        {
            allocator.Abort(offset);
        }
        allocator.Validate();
        Assert.Equal(AllocatorMode.Empty, allocator.Mode);
        Assert.All(harness.PageStates(), s => Assert.Equal(PageState.Available, s));
    }

    [Fact]
    public void OnewaySpamSuspected_HandlerThrows_ReservationAborted()
    {
        using var harness = new AllocatorHarness(10);
        BufferAllocator allocator = harness.Allocator;
        allocator.OnewaySpamSuspected += (_, _) => throw new InvalidOperationException("handler");
        long quota = allocator.OnewayQuota;
        allocator.Reserve(quota - (2 * s_page), oneway: true, senderPid: 1);

        var error = Assert.Throws<InvalidOperationException>(() => allocator.Reserve(s_page + 8, oneway: true, senderPid: 1));
        Assert.Equal("handler", error.Message);
        Assert.Equal(1, allocator.BufferCount);
        Assert.Equal(2 * s_page, allocator.FreeOnewaySpace);
        allocator.Validate();
    }

    [Fact]
    public async Task Concurrent_ReserveCommitFree_WithScanning_StaysConsistent()
    {
        using var harness = new AllocatorHarness(16);
        BufferAllocator allocator = harness.Allocator;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        long fullCount = 0;

        void Worker(int seed)
        {
            var random = new Random(seed);
            var mine = new List<(long Offset, int Size)>();
            for (int i = 0; i < 3000 && !stop.IsCancellationRequested; i++)
            {
                if (mine.Count < 20 && random.Next(3) != 0)
                {
                    int size = random.Next(0, 3 * s_page);
                    if (allocator.TryReserve(size, random.Next(2) == 0, random.Next(4) == 0, seed, out long offset))
                    {
                        // Every byte: a page released too early (the buffer's last, or one it shares with a neighbour)
                        // and punched by the scanner meanwhile reads back as zeros.
                        harness.Pages.GetSpan(offset, size).Fill((byte)seed);
                        allocator.Commit(offset);
                        mine.Add((offset, size));
                    }
                    else
                    {
                        Interlocked.Increment(ref fullCount);
                    }
                }
                else if (mine.Count > 0)
                {
                    int index = random.Next(mine.Count);
                    (long offset, int size) = mine[index];
                    // Another thread never frees our buffer, so our pattern is still there, and every page under it Used.
                    Assert.True(harness.Pages.GetSpan(offset, size).IndexOfAnyExcept((byte)seed) < 0, $"buffer {offset}+{size} lost bytes");
                    for (long page = offset / s_page; size > 0 && page <= (offset + size - 1) / s_page; page++)
                    {
                        Assert.Equal(PageState.Used, harness.Pages.GetPageState((int)page));
                    }
                    Assert.True(allocator.Free(offset));
                    mine.RemoveAt(index);
                }
            }
            foreach ((long offset, _) in mine)
            {
                Assert.True(allocator.Free(offset));
            }
        }

        Task[] workers = [Task.Run(() => Worker(1)), Task.Run(() => Worker(2))];
        Task scanner = Task.Run(() =>
        {
            while (!workers.All(w => w.IsCompleted))
            {
                harness.Shrinker.Scan(4);
                Thread.Yield();
            }
        });
        await Task.WhenAll([.. workers, scanner]).WaitAsync(TestTimeouts.Long);

        allocator.Validate();
        Assert.Equal(0, allocator.BufferCount);
        Assert.Equal(allocator.OnewayQuota, allocator.FreeOnewaySpace);
        Assert.DoesNotContain(PageState.Used, harness.PageStates());
        Assert.Equal(harness.PageStates().Count(s => s == PageState.Available), harness.Shrinker.Count());
        harness.Shrinker.Scan(long.MaxValue);
        Assert.Equal(0, harness.Region.ResidentBytes);
    }
}
