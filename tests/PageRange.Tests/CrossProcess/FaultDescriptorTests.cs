using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Descriptor and mapping hygiene: after many connections come and go, the process holds exactly the descriptors and
/// region mappings it held before. (The peer-death variants are in <see cref="FaultKillTests"/> and <see cref="FaultFuzzTests"/>.)
/// </summary>
/// <remarks>In the cross-process collection so that no other test opens or closes descriptors while this one counts.</remarks>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Fault")]
public sealed class FaultDescriptorTests(ITestOutputHelper output)
{
    private const int Cycles = 1000;

    [Fact]
    public async Task ConnectAndClose_ThousandTimes_DescriptorsAndMappingsReturnToTheirStart()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 16, FreeRingCapacity = 16 };
        var clock = Stopwatch.StartNew();
        int peak = 0;
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        {
            for (int cycle = 0; cycle < Cycles; cycle++)
            {
                Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
                PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(TestTimeouts.Long);
                PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
                // Some traffic, so that pages get backed and buffers live and die.
                client.SendOneway(1, new byte[5000]);
                Transaction held = server.Receive();
                if (cycle == Cycles / 2)
                {
                    peak = FaultResources.Now().MemfdDescriptors;
                }
                bool holdPastClose = cycle % 2 == 1;
                if (!holdPastClose)
                {
                    held.Dispose();
                }
                await client.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
                await server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
                if (holdPastClose)
                {
                    // A transaction the application still holds keeps our region mapped past the close; its dispose
                    // is what lets the region go.
                    Assert.Equal(5000, held.Payload.Length);
                    held.Dispose();
                }
            }
        }
        output.WriteLine($"{Cycles} connect/close cycles in {clock.Elapsed.TotalSeconds:F1} s");

        // No GC before counting: closing and disposing must release everything by themselves, not finalizers.
        FaultResources after = FaultResources.Now();
        output.WriteLine($"before: {baseline}; after: {after}; region descriptors mid-run: {peak}");
        // Both regions of the live pair were open mid-run: the count is not blind.
        Assert.Equal(baseline.MemfdDescriptors + 4, peak);
        Assert.Equal(baseline.Descriptors, after.Descriptors);
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
    }
}
