using System.Buffers.Binary;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The lane's spare array (ReceiveBatch reads the ring into it and swaps it in when admitted): a receiver that passed
/// TryRunLane's lock-free checks just before another thread admitted a lane, and reads the ring after that lane began,
/// must read into the spare, never into the running lane's records.
/// </summary>
public sealed class ConnectionReceiveLaneSpareRaceTests
{
    [Fact]
    public async Task LaneSpare_ReaderPastTheChecksWhileALaneStarts_LaneDeliversOnlyItsOwnRecords()
    {
        // Two threads start between the layout and the lane's look: a housekeeping pass meanwhile would route 0..9 and
        // neither the reader's checks nor the lane would see them (the quiet server makes none).
        await using ConnectionPair pair = await ConnectionPair.CreateWithQuietServerAsync();
        // The lane's run, 0..9, in the ring before anyone looks.
        Assert.True(SpinWait.SpinUntil(pair.Server.TryHoldReaderRoleForTest, TestTimeouts.Short), "the reader role was taken");
        try
        {
            ConnectionReceiveLaneTests.SendNumbered(pair.Client, 0, 10);
        }
        finally
        {
            pair.Server.ReleaseReaderRoleForTest();
        }

        using var readerPastChecks = new ManualResetEventSlim();
        using var releaseReader = new ManualResetEventSlim();
        using var inLane = new ManualResetEventSlim();
        using var releaseLane = new ManualResetEventSlim();
        using var stopReader = new CancellationTokenSource();
        int readerThreadId = 0;
        int paused = 0;
        pair.Server.LaneChecksPassedForTest = () =>
        {
            if (Environment.CurrentManagedThreadId == Volatile.Read(ref readerThreadId) && Interlocked.Exchange(ref paused, 1) == 0)
            {
                readerPastChecks.Set();
                releaseReader.Wait();
            }
        };
        var laneSeen = new List<long>();
        var readerSeen = new List<long>();

        // B: passes the lane's checks (no lane runs yet) and stops before it takes the reader role.
        Task reader = Task.Factory.StartNew(() =>
        {
            Volatile.Write(ref readerThreadId, Environment.CurrentManagedThreadId);
            try
            {
                while (true)
                {
                    pair.Server.ReceiveBatch((seen, in transaction) =>
                        seen.Add(BinaryPrimitives.ReadInt64LittleEndian(transaction.Payload)), readerSeen,
                        PageRangeConnection.MaxReceiveBatch, stopReader.Token);
                }
            }
            catch (OperationCanceledException)
            {
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(readerPastChecks.Wait(TestTimeouts.Long), "the reader did not reach the lane's checks");

        // A: takes 0..9 as a lane and blocks in the first handler.
        Task lane = Task.Factory.StartNew(() =>
            pair.Server.ReceiveBatch((seen, in transaction) =>
            {
                seen.Add(BinaryPrimitives.ReadInt64LittleEndian(transaction.Payload));
                if (seen.Count == 1)
                {
                    inLane.Set();
                    releaseLane.Wait();
                }
            }, laneSeen, 10), TaskCreationOptions.LongRunning);
        Assert.True(inLane.Wait(TestTimeouts.Long), "the lane did not start");

        // B goes on: it takes the role and reads 100..109 off the ring while A's lane runs.
        ConnectionReceiveLaneTests.SendNumbered(pair.Client, 100, 10);
        releaseReader.Set();
        Assert.True(SpinWait.SpinUntil(() => pair.Server.Inbound.RecordsMaybeReady == false, TestTimeouts.Long), "the reader did not read the ring");
        releaseLane.Set();
        await lane.WaitAsync(TestTimeouts.Long);
        stopReader.Cancel();
        await reader.WaitAsync(TestTimeouts.Long);

        Assert.Equal(Enumerable.Range(0, 10).Select(number => (long)number), laneSeen.Take(10));
    }
}
