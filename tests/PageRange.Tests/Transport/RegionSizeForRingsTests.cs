using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A region too small for its rings is refused where the options are used (listening, connecting), before anything is
/// made, with an error that names the settings; the smallest region that fits works.
/// </summary>
public sealed class RegionSizeForRingsTests
{
    // Rings whose header pages are at least MinRegionSize (64 KiB of transaction records alone), so that the boundary
    // region can be set (RegionSize's own rule) on any page size.
    private const int TxRing = 1024;
    private const int FreeRing = 16;

    /// <summary>The header pages of the test's rings, as the layout itself finds them (see the grid test).</summary>
    private static long HeaderBytes => RegionLayout.HeaderBytesFor(TxRing, FreeRing);

    [Fact]
    public void Validate_ThrowsExactlyWhenTheLayoutHasNoDataPage()
    {
        long page = SharedRegion.PageSize;
        foreach (int tx in new[] { 16, 64, 1024, 4096 })
        {
            foreach (int free in new[] { 16, 1024, 4096 })
            {
                long header = RegionLayout.HeaderBytesFor(tx, free);
                // The layout puts the data area right after the header pages it computes for these rings.
                Assert.Equal(header, RegionLayout.Compute(header + page, tx, free).DataOffset);
                foreach (long region in new[] { header - page, header, header + page, header + (2 * page) })
                {
                    if (region < PageRangeOptions.MinRegionSize)
                    {
                        continue;
                    }
                    var options = new PageRangeOptions { RegionSize = region, TransactionRingCapacity = tx, FreeRingCapacity = free };
                    bool layoutRefuses = Throws(() => RegionLayout.Compute(region, tx, free));
                    Assert.Equal(layoutRefuses, Throws(options.Validate));
                    Assert.Equal(region <= header, layoutRefuses);
                }
            }
        }
    }

    [Fact]
    public async Task Listen_RegionTooSmallForTheDefaultRings_ThrowsNamingTheSettings_AndBindsNothing()
    {
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize };
        long header = RegionLayout.HeaderBytesFor(PageRangeOptions.DefaultTransactionRingCapacity, PageRangeOptions.DefaultFreeRingCapacity);

        var error = Assert.Throws<ArgumentException>(() => PageRangeListener.Listen(name, options));

        Assert.Equal("options", error.ParamName);
        Assert.StartsWith($"RegionSize ({PageRangeOptions.MinRegionSize} bytes) leaves no data page after the {header} header bytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("TransactionRingCapacity 1024, FreeRingCapacity 4096", error.Message, StringComparison.Ordinal);
        Assert.Contains($"at least {header + SharedRegion.PageSize} bytes", error.Message, StringComparison.Ordinal);
        // Nothing was bound: the name is free for a listener whose options fit (the smallest region that does).
        await using PageRangeListener listener = PageRangeListener.Listen(name, new PageRangeOptions { RegionSize = header + SharedRegion.PageSize });
    }

    [Fact]
    public async Task Connect_RegionTooSmall_ThrowsBeforeLookingForTheListener()
    {
        // Nobody listens on this name: the options' error comes first, not "nobody listens".
        var options = new PageRangeOptions { RegionSize = HeaderBytes, TransactionRingCapacity = TxRing, FreeRingCapacity = FreeRing };

        var error = await Assert.ThrowsAsync<ArgumentException>(
            () => PageRangeConnection.ConnectAsync(ControlHandshakeTests.UniqueName(), options).AsTask());

        Assert.Equal("options", error.ParamName);
        Assert.Contains($"at least {HeaderBytes + SharedRegion.PageSize} bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SmallestRegionThatFits_ConnectsAndCarriesItsLargestCall()
    {
        var options = new PageRangeOptions
        {
            RegionSize = HeaderBytes + SharedRegion.PageSize,
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

    private static bool Throws(Action action)
    {
        try
        {
            action();
            return false;
        }
        catch (ArgumentException)
        {
            return true;
        }
    }
}
