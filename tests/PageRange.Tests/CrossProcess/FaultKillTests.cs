using System.Diagnostics;
using PageRange.Testing;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// kill -9 of either peer: the survivor sees only whole transactions, learns of the death at once, never hangs, and
/// gives every descriptor and mapping back.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Fault")]
public sealed class FaultKillTests(ITestOutputHelper output)
{
    private const int SenderKills = 12;

    // Oneways delivered by ReceiveBatch's lanes over a test's iterations.
    private long _laneMessages;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SenderKilledMidStream_ReceiverGetsWholeTransactionsThenPeerDied_AndReleasesItsRegion(bool receiveBatch)
    {
        // receiveBatch: drained by ReceiveBatch, whose lane holds a run of oneways without a slot each: a death under it
        // must still deliver every whole transaction once, and the region must still go when the last one is freed.
        var random = new Random(receiveBatch ? 20261203 : 20240611);
        FaultResources baseline = await FaultResources.SettledAsync();
        for (int iteration = 0; iteration < SenderKills; iteration++)
        {
            int killAfter = random.Next(1, 600);
            (int received, ulong last, TimeSpan deathSeenAfter) = await KillSenderOnceAsync(random.Next(), killAfter, receiveBatch);
            output.WriteLine($"iteration {iteration}: killed after {killAfter} received; {received} whole transactions (seq 1..{last}); death seen {deathSeenAfter.TotalMilliseconds:F0} ms after the kill");
        }
        FaultResources after = await FaultResources.SettledAsync();
        output.WriteLine($"before: {baseline}; after {SenderKills} kills: {after}");
        Assert.True(!receiveBatch || _laneMessages > 0, "no lane ran in any iteration");
        Assert.Equal(baseline.Descriptors, after.Descriptors);
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
    }

    private async Task<(int Received, ulong Last, TimeSpan DeathSeenAfter)> KillSenderOnceAsync(int seed, int killAfter, bool receiveBatch)
    {
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionSize = 2L << 20 };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        using TestHostProcess host = TestHostProcess.Start(output, "fault-send-stream", name, seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
        PageRangeConnection receiver = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);
        var seen = new HashSet<ulong>();
        ulong last = 0;
        Stopwatch? sinceKill = null;
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        void Handle(in Transaction transaction)
        {
            Assert.True(FaultPayload.TryVerify(transaction.Payload, out ulong seq),
                $"transaction {seen.Count + 1} (length {transaction.Length}) is partial or corrupt");
            Assert.True(seen.Add(seq), $"seq {seq} delivered twice");
            last = Math.Max(last, seq);
            if (transaction.IsTwoWay)
            {
                try
                {
                    transaction.Reply([1]);
                }
                catch (PeerDiedException)
                {
                    // Killed before we answered.
                }
            }
            if (seen.Count == killAfter)
            {
                host.Kill();
                sinceKill = Stopwatch.StartNew();
            }
        }

        await using (receiver)
        {
            while (true)
            {
                try
                {
                    if (receiveBatch)
                    {
                        receiver.ReceiveBatch(static (handle, in transaction) => handle(transaction), (TransactionHandle)Handle, PageRangeConnection.MaxReceiveBatch, bound.Token);
                        continue;
                    }
                    using Transaction transaction = receiver.Receive(bound.Token);
                    Handle(transaction);
                }
                catch (PeerDiedException)
                {
                    break;
                }
            }
            Assert.NotNull(sinceKill);
            Assert.False(receiver.IsPeerAlive);
            if (receiveBatch)
            {
                // Most of the stream is oneways under 2 KiB: lanes take some (not necessarily in a short iteration).
                output.WriteLine($"lanes: {receiver.LaneCounts}");
                _laneMessages += receiver.LaneCounts.Messages;
            }
            Assert.True(sinceKill.Elapsed < TestTimeouts.Short, $"the death was noticed only after {sinceKill.Elapsed}");
            // The sender publishes in order, and everything published is delivered: exactly 1..last, no gap.
            Assert.Equal(seen.Count, (int)last);
        }
        // Disposed: our region and the dead peer's are unmapped and closed.
        Assert.Equal((0, 0), FaultResources.Naming($"pagerange:{name}"));
        return (seen.Count, last, sinceKill.Elapsed);
    }

    private delegate void TransactionHandle(in Transaction transaction);

    [Fact]
    public async Task ReceiverKilled_PendingCallsAndABlockedSendFailFastWithPeerDied()
    {
        const int SyncCalls = 6;
        const int AsyncCalls = 6;
        const int OnewaySize = 256 << 10;
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeOptions { RegionFullTimeout = Timeout.InfiniteTimeSpan };
        await using (PageRangeListener listener = PageRangeListener.Listen(name, options))
        using (TestHostProcess host = TestHostProcess.Start(output, "fault-hold", name))
        {
            await using PageRangeConnection caller = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);

            var calls = new List<Task>();
            for (int i = 0; i < SyncCalls; i++)
            {
                calls.Add(Task.Factory.StartNew(() => caller.Call(1, new byte[64]).Dispose(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default));
            }
            for (int i = 0; i < AsyncCalls; i++)
            {
                calls.Add(caller.CallAsync(1, new byte[64]).AsTask());
            }
            Assert.Equal(SyncCalls + AsyncCalls, ReadHeld(host, SyncCalls + AsyncCalls));

            // Oneways the peer never frees: the oneway quota runs out and the sender waits for frees that never come.
            Task blockedSend = Task.Factory.StartNew(() =>
            {
                while (true)
                {
                    caller.SendOneway(2, new byte[OnewaySize]);
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            await WaitUntilAsync(() => FreeOnewaySpace(caller) < OnewaySize || blockedSend.IsCompleted);
            Assert.False(blockedSend.IsCompleted);
            Assert.All(calls, call => Assert.False(call.IsCompleted));

            var sinceKill = new Stopwatch();
            var failedAt = new double[calls.Count + 1];
            Task[] all = [.. calls, blockedSend];
            var timed = new Task[all.Length];
            for (int i = 0; i < all.Length; i++)
            {
                int index = i;
                timed[i] = all[i].ContinueWith(_ => failedAt[index] = sinceKill.Elapsed.TotalMilliseconds, TaskScheduler.Default);
            }
            sinceKill.Start();
            host.Kill();
            foreach (Task task in all)
            {
                await Assert.ThrowsAsync<PeerDiedException>(() => task.WaitAsync(TestTimeouts.Long));
            }
            await Task.WhenAll(timed).WaitAsync(TestTimeouts.Long);
            var failedAfter = TimeSpan.FromMilliseconds(failedAt.Max());
            output.WriteLine($"{calls.Count} pending calls and a blocked send failed at [{string.Join(", ", failedAt.Select(ms => ms.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)))}] ms after the kill");
            Assert.True(failedAfter < TimeSpan.FromSeconds(5), $"pending calls took {failedAfter} to fail");

            // New calls fail at once too.
            Assert.Throws<PeerDiedException>(() => caller.Call(1, new byte[8]));
        }
        Assert.Equal((0, 0), FaultResources.Naming($"pagerange:{name}"));
        FaultResources after = await FaultResources.SettledAsync();
        output.WriteLine($"before: {baseline}; after: {after}");
        Assert.Equal(baseline.Descriptors, after.Descriptors);
        Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
    }

    [Fact]
    public async Task PeerKilled_WhileParkedInReceive_DeathSeenWithoutWaitingOutTheParkTimeout()
    {
        string name = ControlHandshakeTests.UniqueName();
        // The longest park slice allowed: a death noticed only when the slice ends takes this long.
        var options = new PageRangeOptions { ParkTimeout = TimeSpan.FromSeconds(10), WaitStrategy = WaitStrategy.Park };
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        using TestHostProcess host = TestHostProcess.Start(output, "fault-hold", name);
        await using PageRangeConnection receiver = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);
        Task receiving = Task.Factory.StartNew(() => receiver.Receive().Dispose(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        // Let the receiving thread get to its park (nothing will arrive to end it).
        await Task.Delay(200);
        Assert.False(receiving.IsCompleted);

        host.Kill();
        var sinceKill = Stopwatch.StartNew();
        await Assert.ThrowsAsync<PeerDiedException>(() => receiving.WaitAsync(TestTimeouts.Long));
        output.WriteLine($"death seen {sinceKill.ElapsedMilliseconds} ms after the kill");
        Assert.True(sinceKill.Elapsed < TimeSpan.FromSeconds(3), $"death seen only after {sinceKill.Elapsed}");
    }

    private static int ReadHeld(TestHostProcess host, int expected)
    {
        int held = 0;
        while (held < expected)
        {
            held = int.Parse(host.ReadUntil("held: "), System.Globalization.CultureInfo.InvariantCulture);
        }
        return held;
    }

    private static long FreeOnewaySpace(PageRangeConnection connection)
    {
        string dump = connection.DumpState();
        int outbound = dump.IndexOf("outbound (", StringComparison.Ordinal);
        System.Text.RegularExpressions.Match match = System.Text.RegularExpressions.Regex.Match(dump[outbound..], @"free oneway space: (\d+)");
        return long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    internal static async Task WaitUntilAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, "The condition did not come true in time.");
            await Task.Delay(5);
        }
    }
}
