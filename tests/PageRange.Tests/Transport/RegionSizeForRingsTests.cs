using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A region too small for its rings is refused where the options are used (listening, connecting), before anything is
/// made, with an error that names the options; the smallest region that fits works.
/// </summary>
public sealed class RegionSizeForRingsTests
{
    // 64 B header + 1024 records of 64 B, then 16 free records of 16 B, rounded up to pages: 17 pages (69,632 bytes).
    private const int TxRing = 1024;
    private const int FreeRing = 16;
    private static readonly long s_headerBytes = 17L * SharedRegion.PageSize;

    [Fact]
    public async Task Listen_RegionTooSmallForTheDefaultRings_ThrowsNamingTheOptions_AndBindsNothing()
    {
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize };

        var error = Assert.Throws<ArgumentException>(() => PageRangeListener.Listen(name, options));

        Assert.Equal("options", error.ParamName);
        Assert.Contains($"PageRangeOptions.RegionSize ({PageRangeOptions.MinRegionSize} bytes)", error.Message, StringComparison.Ordinal);
        Assert.Contains("TransactionRingCapacity 1024, FreeRingCapacity 4096", error.Message, StringComparison.Ordinal);
        // The default rings' header pages are 132 KiB: one data page more is the least that fits.
        Assert.Contains($"at least {(132L << 10) + SharedRegion.PageSize} bytes", error.Message, StringComparison.Ordinal);
        // Nothing was bound: the name is free for a listener whose options fit.
        await using PageRangeListener listener = PageRangeListener.Listen(name, new PageRangeOptions { RegionSize = 136L << 10 });
    }

    [Fact]
    public async Task Connect_RegionTooSmall_ThrowsBeforeLookingForTheListener()
    {
        // Nobody listens on this name: the options' error comes first, not "nobody listens".
        var options = new PageRangeOptions { RegionSize = s_headerBytes, TransactionRingCapacity = TxRing, FreeRingCapacity = FreeRing };

        var error = await Assert.ThrowsAsync<ArgumentException>(
            () => PageRangeConnection.ConnectAsync(ControlHandshakeTests.UniqueName(), options).AsTask());

        Assert.Equal("options", error.ParamName);
        Assert.Contains($"at least {s_headerBytes + SharedRegion.PageSize} bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SmallestRegionThatFits_ConnectsAndCarriesItsLargestCall()
    {
        var options = new PageRangeOptions
        {
            RegionSize = s_headerBytes + SharedRegion.PageSize,
            TransactionRingCapacity = TxRing,
            FreeRingCapacity = FreeRing,
            WaitStrategy = WaitStrategy.Park,
            ParkTimeout = TimeSpan.FromMilliseconds(50),
        };
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        Assert.Equal(SharedRegion.PageSize, pair.Client.MaxMessageSize);
        Task server = Task.Run(() =>
        {
            for (int i = 0; i < 2; i++)
            {
                using Transaction call = pair.Server.Receive();
                call.Reply(call.Payload);
            }
        });

        foreach (int size in new[] { 100, SharedRegion.PageSize })
        {
            byte[] request = new byte[size];
            Random.Shared.NextBytes(request);
            using Transaction reply = pair.Client.Call(1, request, TestTimeouts.Long);
            Assert.Equal(request, reply.Payload.ToArray());
        }
        await server.WaitAsync(TestTimeouts.Long);
    }
}
