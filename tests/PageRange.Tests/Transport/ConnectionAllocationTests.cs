using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Allocation counted over the whole process (an async call hops threads), so this class runs in the non-parallel
/// collection: no other test allocates meanwhile.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ConnectionAllocationTests(ITestOutputHelper output)
{
    [Fact]
    public async Task CallAsync_NoTimeoutNoToken_AllocatesNothingPerCall()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        byte[] payload = new byte[64];
        for (int i = 0; i < 2_000; i++)
        {
            using Transaction reply = await pair.Client.CallAsync(1, payload);
        }
        const int Calls = 5_000;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < Calls; i++)
        {
            using Transaction reply = await pair.Client.CallAsync(1, payload);
        }
        long perCall = (GC.GetTotalAllocatedBytes(precise: true) - before) / Calls;
        output.WriteLine($"{perCall} bytes per async call, all threads of the process");
        await stop.CancelAsync();
        // No timer, no linked token source, no registration, a pooled state machine: 0 bytes measured. The bound leaves
        // room for runtime noise; a timeout source with its timer alone is over 150 bytes.
        Assert.True(perCall < 128, $"{perCall} bytes allocated per async call");
        Assert.True(echo.Join(TestTimeouts.Long));
    }
}
