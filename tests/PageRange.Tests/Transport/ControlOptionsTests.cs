using PageRange.Memory;

namespace PageRange.Tests.Transport;

public sealed class ControlOptionsTests
{
    [Fact]
    public void New_HasDocumentedDefaults()
    {
        var options = new PageRangeOptions();

        Assert.Equal(4L << 20, options.RegionSize);
        Assert.Equal(1024, options.TransactionRingCapacity);
        Assert.Equal(4096, options.FreeRingCapacity);
        Assert.Equal(TimeSpan.FromSeconds(10), options.ConnectTimeout);
        Assert.Equal(Timeout.InfiniteTimeSpan, options.CallTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.RegionFullTimeout);
        Assert.False(options.AllowAnyUid);
        Assert.Empty(options.AllowedUids);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(PageRangeOptions.MinRegionSize - 4096)]
    [InlineData(PageRangeOptions.MaxRegionSize + 65536)]
    [InlineData(PageRangeOptions.MinRegionSize + 1)]
    public void RegionSize_OutOfBoundsOrNotPageMultiple_Throws(long size)
    {
        var options = new PageRangeOptions();

        Assert.Throws<ArgumentOutOfRangeException>(() => options.RegionSize = size);
        Assert.Equal(PageRangeOptions.DefaultRegionSize, options.RegionSize);
    }

    [Theory]
    [InlineData(PageRangeOptions.MinRegionSize)]
    [InlineData(PageRangeOptions.MaxRegionSize)]
    public void RegionSize_AtBounds_IsAccepted(long size)
    {
        Assert.Equal(size, new PageRangeOptions { RegionSize = size }.RegionSize);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(8)]
    [InlineData(1000)]
    [InlineData(1 << 17)]
    public void RingCapacities_NotPowerOfTwoInBounds_Throw(int capacity)
    {
        var options = new PageRangeOptions();

        Assert.Throws<ArgumentOutOfRangeException>(() => options.TransactionRingCapacity = capacity);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.FreeRingCapacity = capacity);
    }

    [Fact]
    public void Timeouts_RejectNegativeAndZeroWhereMeaningless()
    {
        var options = new PageRangeOptions();

        Assert.Throws<ArgumentOutOfRangeException>(() => options.ConnectTimeout = TimeSpan.Zero);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.CallTimeout = TimeSpan.FromSeconds(-2));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.RegionFullTimeout = TimeSpan.FromSeconds(-2));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.SpinDuration = TimeSpan.FromSeconds(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => options.ReceiveThreads = 0);
        options.RegionFullTimeout = TimeSpan.Zero;
        options.ConnectTimeout = Timeout.InfiniteTimeSpan;
        Assert.Equal(TimeSpan.Zero, options.RegionFullTimeout);
        Assert.Equal(Timeout.InfiniteTimeSpan, options.ConnectTimeout);
    }

    [Fact]
    public void IsUidAllowed_DefaultsToOwnUidOnly_AndWidensByOptions()
    {
        var options = new PageRangeOptions();

        Assert.True(options.IsUidAllowed(1000, ownUid: 1000));
        Assert.False(options.IsUidAllowed(65534, ownUid: 1000));
        options.AllowedUids.Add(65534);
        Assert.True(options.IsUidAllowed(65534, ownUid: 1000));
        Assert.False(options.IsUidAllowed(0, ownUid: 1000));
        options.AllowAnyUid = true;
        Assert.True(options.IsUidAllowed(0, ownUid: 1000));
    }

    [Fact]
    public void Clone_IsNotReachedByLaterChanges()
    {
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize };
        options.AllowedUids.Add(7);

        PageRangeOptions copy = options.Clone();
        options.RegionSize = PageRangeOptions.DefaultRegionSize;
        options.AllowedUids.Add(8);

        Assert.Equal(PageRangeOptions.MinRegionSize, copy.RegionSize);
        Assert.Equal([7u], copy.AllowedUids);
        Assert.Equal(0, PageRangeOptions.MinRegionSize % SharedRegion.PageSize);
    }

    [Fact]
    public void HandshakeShares_DefaultsBoundsAndClone()
    {
        var options = new PageRangeOptions();
        Assert.Equal(32, options.MaxHandshakesPerUid);
        Assert.Equal(16, options.MaxHandshakesPerProcess);

        foreach (int bad in new[] { 0, -1, PageRange.Transport.PageRangeListener.MaxConcurrentHandshakes + 1 })
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxHandshakesPerUid = bad);
            Assert.Throws<ArgumentOutOfRangeException>(() => options.MaxHandshakesPerProcess = bad);
        }
        Assert.Equal(32, options.MaxHandshakesPerUid);
        Assert.Equal(16, options.MaxHandshakesPerProcess);

        options.MaxHandshakesPerUid = 1;
        options.MaxHandshakesPerProcess = PageRange.Transport.PageRangeListener.MaxConcurrentHandshakes;
        PageRangeOptions copy = options.Clone();
        Assert.Equal(1, copy.MaxHandshakesPerUid);
        Assert.Equal(64, copy.MaxHandshakesPerProcess);
    }

    [Fact]
    public void HandshakeRestTimeout_AlwaysFinite_TheHelloTimeoutOrItsDefault()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), new PageRangeOptions { ConnectTimeout = Timeout.InfiniteTimeSpan }.HandshakeRestTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), new PageRangeOptions { HelloTimeout = TimeSpan.FromSeconds(2) }.HandshakeRestTimeout);
        Assert.Equal(
            TimeSpan.FromSeconds(5),
            new PageRangeOptions { HelloTimeout = Timeout.InfiniteTimeSpan, ConnectTimeout = Timeout.InfiniteTimeSpan }.HandshakeRestTimeout);
    }
}
