using PageRange.Threading;
using PageRange.Allocation;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Allocation;

/// <summary>
/// An allocator given its owner's lock (<see cref="BufferAllocatorOptions.SharedLock"/>): the owner's <c>…UnderLock</c>
/// calls skip the second lock and leave the same bookkeeping as the locked calls; everything else still takes the
/// shared lock, so a stats reader waits for the owner.
/// </summary>
public sealed class BufferAllocatorSharedLockTests
{
    private static readonly int s_page = SharedRegion.PageSize;

    [Fact]
    public void UnderLockCalls_SameSequenceAsLockedCalls_LeaveTheSameBookkeeping()
    {
        using var locked = new SharedLockAllocator(16);
        using var underLock = new SharedLockAllocator(16);
        // 20 buffers: past the array's 8, so the conversion to a tree and the pool's growth run under the held lock too.
        long[] a = new long[20];
        long[] b = new long[20];
        for (int i = 0; i < a.Length; i++)
        {
            int size = 40 + (i * 300);
            bool oneway = i % 3 == 0;
            Assert.True(locked.Allocator.TryReserve(size, oneway, clearOnFree: i % 5 == 0, senderPid: 7, out a[i]));
            using (underLock.Lock.EnterScope())
            {
                Assert.True(underLock.Allocator.TryReserveUnderLock(size, oneway, clearOnFree: i % 5 == 0, senderPid: 7, out b[i]));
            }
        }
        Assert.Equal(a, b);
        for (int i = 0; i < a.Length; i++)
        {
            if (i == 11)
            {
                locked.Allocator.Abort(a[i]);
                using (underLock.Lock.EnterScope())
                {
                    underLock.Allocator.AbortUnderLock(b[i]);
                }
                continue;
            }
            locked.Allocator.Commit(a[i], (ulong)i);
            using (underLock.Lock.EnterScope())
            {
                underLock.Allocator.CommitUnderLock(b[i], (ulong)i);
            }
        }
        // Every other buffer freed (the clear-on-free ones among them are zeroed and released under the held lock),
        // one free of a buffer still on the ring, and one of an unknown offset: the same results on both.
        for (int i = 0; i < a.Length; i += 2)
        {
            FreeResult expected = locked.Allocator.Free(a[i], deliveredBefore: 19);
            FreeResult actual;
            using (underLock.Lock.EnterScope())
            {
                actual = underLock.Allocator.FreeUnderLock(b[i], deliveredBefore: 19);
            }
            Assert.Equal(expected, actual);
        }
        Assert.Equal(FreeResult.Ignored, locked.Allocator.Free(a[11], deliveredBefore: 19));
        Assert.Equal(FreeResult.Undelivered, locked.Allocator.Free(a[19], deliveredBefore: 19));
        using (underLock.Lock.EnterScope())
        {
            Assert.Equal(FreeResult.Ignored, underLock.Allocator.FreeUnderLock(b[11], deliveredBefore: 19));
            Assert.Equal(FreeResult.Undelivered, underLock.Allocator.FreeUnderLock(b[19], deliveredBefore: 19));
        }

        locked.Allocator.Validate();
        underLock.Allocator.Validate();
        Assert.Equal(locked.Allocator.GetFreeRanges(), underLock.Allocator.GetFreeRanges());
        Assert.Equal(locked.Allocator.GetStats() with { Pages = default }, underLock.Allocator.GetStats() with { Pages = default });
        Assert.Equal(locked.PageStates(), underLock.PageStates());
        Assert.Equal(AllocatorMode.Tree, underLock.Allocator.Mode);
    }

    [Fact]
    public void FreeUnderLock_ClearOnFree_ZeroesTheBufferAndMakesItsPageAvailable()
    {
        using var harness = new SharedLockAllocator(4);
        long offset;
        using (harness.Lock.EnterScope())
        {
            Assert.True(harness.Allocator.TryReserveUnderLock(s_page, oneway: false, clearOnFree: true, senderPid: 0, out offset));
            harness.Pages.GetSpan(offset, 4).Fill(0xAB);
            harness.Allocator.CommitUnderLock(offset, sequence: 0);
            Assert.Equal(FreeResult.Freed, harness.Allocator.FreeUnderLock(offset, deliveredBefore: 1));
        }
        Assert.Equal(0, harness.Allocator.BufferCount);
        Assert.Equal(PageState.Available, harness.Pages.GetPageState((int)(offset / s_page)));
        Assert.All(harness.Region.GetSpan(offset, 4).ToArray(), value => Assert.Equal(0, value));
    }

    [Fact]
    public async Task Stats_OwnerHoldsTheSharedLock_WaitUntilItIsReleased()
    {
        using var harness = new SharedLockAllocator(4);
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        Task owner = Task.Factory.StartNew(() =>
        {
            using (harness.Lock.EnterScope())
            {
                Assert.True(harness.Allocator.TryReserveUnderLock(64, oneway: false, clearOnFree: false, senderPid: 0, out _));
                held.Set();
                release.Wait(TestTimeouts.Long);
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.True(held.Wait(TestTimeouts.Long));

        // The reader must wait: the owner mutates the bookkeeping without a lock of the allocator's own.
        Task<int> reader = Task.Run(() => harness.Allocator.BufferCount);
        await Task.WhenAny(reader, Task.Delay(TimeSpan.FromMilliseconds(200)));
        Assert.False(reader.IsCompleted, "a stats reader ran while the owner held the shared lock");
        release.Set();
        Assert.Equal(1, await reader.WaitAsync(TestTimeouts.Long));
        await owner.WaitAsync(TestTimeouts.Long);
    }

    [Theory]
    [InlineData(10)]
    [InlineData(2)]
    public void RecycleUnderLock_AnAllocatedBuffer_ReservedAgainWhereItLies_NothingElseChanges(int buffers)
    {
        // In array mode (2 buffers) and tree mode (10): a writer's resting pack opened again without a free and a placement.
        using var owner = new SharedLockAllocator(40);
        long[] offsets = new long[buffers];
        using (owner.Lock.EnterScope())
        {
            for (int i = 0; i < buffers; i++)
            {
                Assert.True(owner.Allocator.TryReserveUnderLock(s_page, oneway: true, clearOnFree: false, senderPid: 7, out offsets[i]));
                owner.Allocator.CommitUnderLock(offsets[i], (ulong)i);
            }
        }
        long recycled = offsets[buffers / 2];
        var before = owner.Allocator.GetStats();
        PageState[] pagesBefore = owner.PageStates();
        using (owner.Lock.EnterScope())
        {
            Assert.True(owner.Allocator.IsFreeableUnderLock(recycled, deliveredBefore: (ulong)buffers));
            owner.Allocator.RecycleUnderLock(recycled, s_page);
            // Reserved again: not freeable, and a second recycle refused, until it is delivered once more.
            Assert.False(owner.Allocator.IsFreeableUnderLock(recycled, deliveredBefore: ulong.MaxValue));
            Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(recycled, s_page));
            owner.Allocator.CommitUnderLock(recycled, 100);
            Assert.Equal(FreeResult.Undelivered, owner.Allocator.FreeUnderLock(recycled, deliveredBefore: 100));
        }
        var after = owner.Allocator.GetStats();
        Assert.Equal(
            (before.AllocatedBuffers, before.FreeRanges, before.FreeBytes, before.FreeOnewaySpace),
            (after.AllocatedBuffers, after.FreeRanges, after.FreeBytes, after.FreeOnewaySpace));
        Assert.Equal(pagesBefore, owner.PageStates());
        Assert.Equal(FreeResult.Freed, owner.Allocator.Free(recycled, deliveredBefore: 101));
    }

    [Fact]
    public void RecycleUnderLock_NoBufferThere_NotAllocated_AnotherSize_OrNotAPacksKind_Refused()
    {
        using var owner = new SharedLockAllocator(16);
        using (owner.Lock.EnterScope())
        {
            Assert.True(owner.Allocator.TryReserveUnderLock(s_page, oneway: true, clearOnFree: false, senderPid: 7, out long reserved));
            Assert.True(owner.Allocator.TryReserveUnderLock(s_page, oneway: true, clearOnFree: false, senderPid: 7, out long allocated));
            owner.Allocator.CommitUnderLock(allocated, 0);
            Assert.Contains("no buffer starts", Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(allocated + 8, s_page)).Message, StringComparison.Ordinal);
            Assert.Contains("Reserved", Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(reserved, s_page)).Message, StringComparison.Ordinal);
            Assert.Contains("bytes", Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(allocated, s_page / 2)).Message, StringComparison.Ordinal);
            // Not what a pack is reserved as: a call's buffer, or a oneway one cleared on free.
            Assert.True(owner.Allocator.TryReserveUnderLock(s_page, oneway: false, clearOnFree: false, senderPid: 7, out long call));
            Assert.True(owner.Allocator.TryReserveUnderLock(s_page, oneway: true, clearOnFree: true, senderPid: 7, out long cleared));
            owner.Allocator.CommitUnderLock(call, 1);
            owner.Allocator.CommitUnderLock(cleared, 2);
            Assert.Contains("not oneway", Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(call, s_page)).Message, StringComparison.Ordinal);
            Assert.Contains("cleared on free", Assert.Throws<InvalidOperationException>(() => owner.Allocator.RecycleUnderLock(cleared, s_page)).Message, StringComparison.Ordinal);
            Assert.True(owner.Allocator.IsFreeableUnderLock(allocated, deliveredBefore: 1));
        }
    }

    /// <summary>A real region and page range, and an allocator that uses <see cref="Lock"/> as its lock.</summary>
    private sealed class SharedLockAllocator : IDisposable
    {
        internal SharedLockAllocator(int pageCount)
        {
            Region = SharedRegion.Create("pagerange-alloc-shared-lock-test", (long)pageCount * s_page);
            Pages = new ShrinkablePageRange(Region, 0, pageCount, Shrinker);
            Allocator = new BufferAllocator(Pages, new BufferAllocatorOptions { SharedLock = Lock });
        }

        internal ThinLock Lock { get; } = new();

        internal Shrinker Shrinker { get; } = new();

        internal SharedRegion Region { get; }

        internal ShrinkablePageRange Pages { get; }

        internal BufferAllocator Allocator { get; }

        internal PageState[] PageStates() => [.. Enumerable.Range(0, Pages.PageCount).Select(Pages.GetPageState)];

        public void Dispose()
        {
            Pages.Dispose();
            Region.Dispose();
        }
    }
}
