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

    [Fact]
    public async Task ReceiveAsync_WaitingForEachCall_AllocatesNothingPerWait()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.WaitStrategy = WaitStrategy.SpinThenPark;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        const int Warmup = 2_000;
        const int Calls = 5_000;
        long before = 0;
        bool measuring = false;
        using var warm = new ManualResetEventSlim(false);
        using var go = new ManualResetEventSlim(false);
        // The caller sends the next call only after the previous reply: every ReceiveAsync on the server has to wait.
        var caller = new Thread(() =>
        {
            byte[] payload = new byte[64];
            for (int i = 0; i < Warmup; i++)
            {
                pair.Client.Call(1, payload, TestTimeouts.Long).Dispose();
            }
            warm.Set();
            go.Wait(TestTimeouts.Long);
            for (int i = 0; i < Calls; i++)
            {
                pair.Client.Call(1, payload, TestTimeouts.Long).Dispose();
            }
        })
        { IsBackground = true, Name = "caller" };
        caller.Start();
        for (int i = 0; i < Warmup + Calls; i++)
        {
            if (i == Warmup)
            {
                Assert.True(warm.Wait(TestTimeouts.Long));
                before = GC.GetTotalAllocatedBytes(precise: true);
                measuring = true;
                go.Set();
            }
            using Transaction call = await pair.Server.ReceiveAsync();
            call.Reply(call.Payload);
        }
        long perWait = (GC.GetTotalAllocatedBytes(precise: true) - before) / Calls;
        output.WriteLine($"{perWait} bytes per waiting ReceiveAsync (and the sync call that fed it), all threads of the process");
        Assert.True(measuring);
        Assert.True(caller.Join(TestTimeouts.Long));
        // A SemaphoreSlim.WaitAsync with a timeout, as before, is well over 128 bytes per wait.
        Assert.True(perWait < 64, $"{perWait} bytes allocated per ReceiveAsync");
    }
}
