using System.Buffers;
using PageRange.Memory;

namespace PageRange.Tests.Memory;

/// <summary>
/// The seed's state machine over a real memfd: every transition, the no-op cases, and reclamation measured with the
/// kernel's own count of backed bytes. Each test has its own shrinker so that tests running in parallel do not share
/// an LRU.
/// </summary>
public sealed class ShrinkablePageRangeTests : IDisposable
{
    private const int Pages = 8;
    private static readonly int s_page = SharedRegion.PageSize;

    private readonly Shrinker _shrinker = new();
    private readonly SharedRegion _region;
    private readonly ShrinkablePageRange _range;

    public ShrinkablePageRangeTests()
    {
        // One header page before the data area, as a transport region has: every offset below is relative to the
        // range, and the kernel's count covers the whole region.
        _region = SharedRegion.Create("range-test", (Pages + 1) * s_page);
        _range = new ShrinkablePageRange(_region, s_page, Pages, _shrinker);
    }

    public void Dispose()
    {
        _range.Dispose();
        _region.Dispose();
    }

    private long Resident => _region.ResidentBytes;

    private void AssertStates(string expected)
    {
        // F = Free, A = Available, U = Used, one letter per page.
        string actual = string.Concat(_range.GetPageStates().Select(s => s switch
        {
            PageState.Free => 'F',
            PageState.Available => 'A',
            _ => 'U',
        }));
        Assert.Equal(expected, actual);
        PageRangeStats stats = _range.GetStats();
        Assert.Equal(expected.Count(c => c == 'A'), _shrinker.Count());
        Assert.Equal(stats.Available, _shrinker.WalkLru().GetValueOrDefault(_range));
        Assert.Equal((long)(stats.Used + stats.Available) * s_page, Resident);
    }

    [Fact]
    public void New_Range_HasEveryPageFreeAndNothingResident()
    {
        AssertStates("FFFFFFFF");
        Assert.Equal(new PageRangeStats(0, 0, Pages, 0, 0), _range.GetStats());
        Assert.Equal(Pages, _range.PageCount);
        Assert.Equal(Pages * s_page, _range.ByteCount);
    }

    [Fact]
    public void UseRange_FreePages_BacksThemWithZerosAndMarksThemUsed()
    {
        _range.UseRange(1, 4);
        AssertStates("FUUUFFFF");
        Assert.Equal(3 * s_page, Resident);
        Assert.Equal(4, _range.GetStats().HighWaterMark);
        Assert.True(_range.GetSpan(s_page, 3 * s_page).IndexOfAnyExcept((byte)0) < 0);
    }

    [Theory]
    [InlineData(3, 3)]
    [InlineData(5, 2)]
    [InlineData(0, 0)]
    [InlineData(-3, -7)]
    [InlineData(20, 10)]
    public void UseRangeAndStopUsingRange_EmptyOrInvertedRange_AreNoOps(int start, int end)
    {
        _range.UseRange(2, 4);
        _range.StopUsingRange(3, 4);
        _range.UseRange(start, end);
        _range.StopUsingRange(start, end);
        AssertStates("FFUAFFFF");
    }

    [Fact]
    public void UseRange_UsedPages_IsIdempotentAndKeepsBytes()
    {
        _range.UseRange(0, 3);
        _range.Write(s_page + 5, 0x1122334455667788UL);
        _range.UseRange(0, 3);
        _range.UseRange(1, 2);
        AssertStates("UUUFFFFF");
        Assert.Equal(3 * s_page, Resident);
        Assert.Equal(0x1122334455667788UL, _range.Read<ulong>(s_page + 5));
    }

    [Fact]
    public void StopUsingRange_UsedPages_MakesThemAvailableWithoutFreeingMemory()
    {
        _range.UseRange(0, 4);
        _range.StopUsingRange(1, 3);
        AssertStates("UAAUFFFF");
        Assert.Equal(4 * s_page, Resident);
    }

    [Fact]
    public void StopUsingRange_QueuesPagesInReverseOrder()
    {
        _range.UseRange(0, 4);
        _range.StopUsingRange(0, 4);
        // Reverse order: page 3 joined the LRU first, so it is the oldest and goes first.
        Assert.Equal(1, _shrinker.Scan(1));
        AssertStates("AAAFFFFF");
        Assert.Equal(1, _shrinker.Scan(1));
        AssertStates("AAFFFFFF");
    }

    [Fact]
    public void StopUsingRange_FreePages_SkipsThem()
    {
        _range.StopUsingRange(0, Pages);
        AssertStates("FFFFFFFF");
        _range.UseRange(2, 3);
        _range.StopUsingRange(0, Pages);
        AssertStates("FFAFFFFF");
    }

    [Fact]
    public void StopUsingRange_AvailablePages_IsIdempotent()
    {
        _range.UseRange(0, 2);
        _range.StopUsingRange(0, 2);
        _range.StopUsingRange(0, 2);
        AssertStates("AAFFFFFF");
        Assert.Equal(2, _shrinker.Count());
    }

    [Fact]
    public void UseRange_AvailablePage_TakesItOffTheLruKeepingItsBytes()
    {
        _range.UseRange(0, 2);
        _range.GetSpan(0, 2 * s_page).Fill(0x5A);
        _range.StopUsingRange(0, 2);
        _range.UseRange(0, 2);
        AssertStates("UUFFFFFF");
        Assert.True(_range.GetSpan(0, 2 * s_page).IndexOfAnyExcept((byte)0x5A) < 0);
        Assert.Equal(0, _shrinker.Scan(10));
    }

    [Fact]
    public void UseRange_AfterScan_BacksPagesAgainReadingZeros()
    {
        _range.UseRange(0, 2);
        _range.GetSpan(0, 2 * s_page).Fill(0xC3);
        _range.StopUsingRange(0, 2);
        Assert.Equal(2, _shrinker.Scan(2));
        AssertStates("FFFFFFFF");
        _range.UseRange(0, 2);
        AssertStates("UUFFFFFF");
        Assert.True(_range.GetSpan(0, 2 * s_page).IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void Scan_AvailablePages_ResidentBytesFallByExactlyTheFreedPages()
    {
        _range.UseRange(0, Pages);
        _range.GetSpan(0, Pages * s_page).Fill(1);
        Assert.Equal(Pages * s_page, Resident);
        _range.StopUsingRange(2, 7);

        long before = Resident;
        long freed = _shrinker.Scan(3);
        Assert.Equal(3, freed);
        Assert.Equal(before - (freed * s_page), Resident);

        freed = _shrinker.Scan(100);
        Assert.Equal(2, freed);
        AssertStates("UUFFFFFU");
        Assert.Equal(3 * s_page, Resident);

        // And back: using the Free pages raises the count by exactly as many pages.
        _range.UseRange(2, 7);
        Assert.Equal(Pages * s_page, Resident);
        AssertStates("UUUUUUUU");
    }

    [Fact]
    public void Scan_FreesAtMostTheRequestedPages()
    {
        _range.UseRange(0, Pages);
        _range.StopUsingRange(0, Pages);
        Assert.Equal(0, _shrinker.Scan(0));
        Assert.Equal(Pages, _shrinker.Count());
        Assert.Equal(3, _shrinker.Scan(3));
        Assert.Equal(Pages - 3, _shrinker.Count());
        Assert.Equal(Pages - 3, _shrinker.Scan(long.MaxValue));
        AssertStates("FFFFFFFF");
        Assert.Equal(0, Resident);
    }

    [Fact]
    public void UseRangeAndStopUsingRange_EndBeyondRange_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.UseRange(0, Pages + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.UseRange(-1, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.StopUsingRange(Pages - 1, Pages + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.StopUsingRange(-1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.GetPageState(Pages));
        AssertStates("FFFFFFFF");
    }

    [Fact]
    public void WriteAndRead_AcrossPageBoundary_RoundTripsUnaligned()
    {
        _range.UseRange(0, 2);
        long offset = s_page - 3;
        _range.Write(offset, 0x0102030405060708L);
        Assert.Equal(0x0102030405060708L, _range.Read<long>(offset));
        // The bytes land in the region right after the header page.
        Assert.Equal(0x08, _region.GetSpan(s_page + offset, 1)[0]);
        Assert.Equal(0x01, _region.GetSpan(s_page + offset + 7, 1)[0]);
    }

    [Fact]
    public void CopyFrom_SpanAndSequence_WriteEveryByte()
    {
        _range.UseRange(0, 3);
        byte[] first = Enumerable.Range(0, s_page + 100).Select(i => (byte)i).ToArray();
        _range.CopyFrom(50, first);
        var destination = new byte[first.Length];
        _range.Read(50, destination);
        Assert.Equal(first, destination);

        ReadOnlySequence<byte> sequence = TwoSegments([9, 8, 7], [6, 5, 4, 3]);
        _range.CopyFrom(2 * s_page - 2, sequence);
        var read = new byte[7];
        _range.Read(2 * s_page - 2, read);
        Assert.Equal(new byte[] { 9, 8, 7, 6, 5, 4, 3 }, read);

        _range.FillZero(2 * s_page - 1, 3);
        _range.Read(2 * s_page - 2, read);
        Assert.Equal(new byte[] { 9, 0, 0, 0, 5, 4, 3 }, read);
    }

    [Fact]
    public void Iterate_SizeZero_SucceedsAnywhere()
    {
        _range.CopyFrom(0, ReadOnlySpan<byte>.Empty);
        _range.FillZero(Pages * s_page, 0);
        _range.Read(long.MaxValue, Span<byte>.Empty);
        AssertStates("FFFFFFFF");
    }

    [Theory]
    [InlineData(-1L, 1L)]
    [InlineData(0L, -1L)]
    [InlineData(0L, 8L * 4096 * 1024)]
    [InlineData(long.MaxValue, 2L)]
    [InlineData(long.MaxValue - 1, long.MaxValue)]
    public void Iterate_OutsideTheRange_ThrowsArgumentOutOfRange(long offset, long size)
    {
        _range.UseRange(0, Pages);
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.FillZero(offset, size));
        Assert.Throws<ArgumentOutOfRangeException>(() => _range.FillZero(Pages * s_page - 1, 2));
    }

    [Fact]
    public void Iterate_FreeOrAvailablePage_ThrowsPageNotInUseAndWritesNothing()
    {
        _range.UseRange(0, 2);
        _range.StopUsingRange(1, 2);

        var free = Assert.Throws<PageNotInUseException>(() => _range.Read<int>(3 * s_page));
        Assert.Equal(3, free.PageIndex);
        var available = Assert.Throws<PageNotInUseException>(() => _range.Write(s_page, 1));
        Assert.Equal(1, available.PageIndex);

        // A write that starts on the Used page and runs into the Available one fails before touching either.
        var spanning = Assert.Throws<PageNotInUseException>(() => _range.GetSpan(s_page - 4, 8));
        Assert.Equal(1, spanning.PageIndex);
        Assert.Throws<PageNotInUseException>(() => _range.CopyFrom(s_page - 4, [1, 2, 3, 4, 5, 6, 7, 8]));
        Assert.Equal(0, _range.Read<int>(s_page - 4));

        // Never a silent re-backing: the page stays Available and nothing more is resident.
        AssertStates("UAFFFFFF");
    }

    [Fact]
    public void Dispose_TakesEveryPageOffTheLru()
    {
        var other = new ShrinkablePageRange(_region, s_page, 4, _shrinker);
        other.UseRange(0, 4);
        other.StopUsingRange(0, 3);
        _range.UseRange(4, 6);
        _range.StopUsingRange(4, 6);
        Assert.Equal(5, _shrinker.Count());

        other.Dispose();
        other.Dispose();
        Assert.Equal(2, _shrinker.Count());
        Assert.False(_shrinker.WalkLru().ContainsKey(other));
        Assert.Equal(2, _shrinker.Scan(10));

        Assert.Throws<ObjectDisposedException>(() => other.UseRange(0, 1));
        Assert.Throws<ObjectDisposedException>(() => other.Read<int>(0));
        // The unlocked view of a slab's Used pages too (a callback that disposed the connection under the send lock).
        Assert.Throws<ObjectDisposedException>(() => other.GetSpanOfUsedPages(0, 64).Length);
        other.StopUsingRange(0, 4);
        Assert.Equal(0, _shrinker.Count());
        Assert.Equal(0, other.GetStats().ResidentBytes);
    }

    [Fact]
    public void Range_OutlivesItsRegionOwner_StillBacksAndReclaims()
    {
        var shrinker = new Shrinker();
        var region = SharedRegion.Create("outlive", 4 * s_page);
        var range = new ShrinkablePageRange(region, 0, 4, shrinker);
        range.UseRange(0, 3);
        region.Dispose();
        Assert.Throws<ObjectDisposedException>(() => region.ResidentBytes);

        // The range's reference keeps the memfd usable: the shrinker can still punch and the stats still read.
        range.UseRange(3, 4);
        range.Write(0, 7);
        range.StopUsingRange(0, 4);
        Assert.Equal(4 * s_page, range.GetStats().ResidentBytes);
        Assert.Equal(4, shrinker.Scan(10));
        Assert.Equal(0, shrinker.PunchFailures);
        Assert.Equal(new PageRangeStats(0, 0, 4, 4, 0), range.GetStats());
        range.Dispose();
    }

    [Fact]
    public void GetStats_CountsStatesAndHighWaterMark()
    {
        _range.UseRange(1, 6);
        _range.StopUsingRange(3, 5);
        Assert.Equal(2, _shrinker.Scan(1) + _shrinker.Scan(1));
        _range.UseRange(0, 1);
        PageRangeStats stats = _range.GetStats();
        Assert.Equal(new PageRangeStats(4, 0, 4, 6, 4L * s_page), stats);
        Assert.Equal($"pages: 4:0:4, pages high watermark: 6, resident bytes: {4 * s_page}", stats.ToString());
    }

    [Fact]
    public void Constructor_BadArguments_Throw()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShrinkablePageRange(_region, 0, 0, _shrinker));
        Assert.Throws<ArgumentException>(() => new ShrinkablePageRange(_region, 100, 1, _shrinker));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShrinkablePageRange(_region, s_page, Pages + 1, _shrinker));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShrinkablePageRange(_region, -s_page, 1, _shrinker));
    }

    [Fact]
    public void UseRange_AllocationFails_ThrowsTypedErrorAndLeavesStatesConsistent()
    {
        _range.UseRange(0, 2);
        _range.StopUsingRange(0, 2);
        // Page 3 of the range (region offset: one header page + 3 pages) cannot be backed.
        _region.AllocationFaultInjector = offset => offset == s_page + (3 * s_page);

        var error = Assert.Throws<BackingAllocationException>(() => _range.UseRange(0, 5));
        Assert.Equal("fallocate", error.SystemCall);
        Assert.Equal(Interop.ENOSPC, error.Errno);
        Assert.IsAssignableFrom<PageRangeException>(error);

        // Pages before the failure are Used (the Available ones left the LRU), the failing page and the ones after
        // it are untouched; no page is left on the LRU.
        AssertStates("UUUFFFFF");
        Assert.Equal(3, _range.GetStats().HighWaterMark);
        Assert.Throws<PageNotInUseException>(() => _range.Write(3 * s_page, 1));

        // The caller's rollback, as binder's allocator does: stop using what it asked for.
        _range.StopUsingRange(0, 5);
        AssertStates("AAAFFFFF");

        _region.AllocationFaultInjector = null;
        _range.UseRange(0, 5);
        AssertStates("UUUUUFFF");
    }

    [Fact]
    public void Scan_PunchFails_PageStaysAvailableWithItsBytes()
    {
        _range.UseRange(0, 2);
        _range.Write(0, 0xABCD);
        _range.StopUsingRange(0, 2);
        _region.PunchFaultInjector = offset => offset == s_page;

        Assert.Equal(1, _shrinker.Scan(2));
        Assert.Equal(1, _shrinker.PunchFailures);
        AssertStates("AFFFFFFF");

        _region.PunchFaultInjector = null;
        _range.UseRange(0, 1);
        Assert.Equal(0xABCD, _range.Read<int>(0));
    }

    private static ReadOnlySequence<byte> TwoSegments(byte[] first, byte[] second)
    {
        var head = new Segment(first, 0);
        Segment tail = head.Append(second);
        return new ReadOnlySequence<byte>(head, 0, tail, second.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
