using System.Buffers.Binary;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// Races around <see cref="PageRangeConnection.ReceiveBatch"/>'s lane found by a review: a close while a lane runs (it
/// releases the backlog, and with it the oneway in progress) must not let another receiver start a lane over the running
/// one's records; a copy of a lane transaction read on another thread must never return a later message's payload.
/// </summary>
public sealed class ConnectionReceiveLaneRaceTests
{
    [Fact]
    public async Task LaneRecords_DisposeWhileALaneRunsAndAnotherReceiverLoops_LaneDeliversOnlyItsOwnMessages()
    {
        // A housekeeping pass that routed 0..9 before the lane looked would leave no lane to race (the test would pass
        // with nothing tested): the quiet server makes none.
        await using ConnectionPair pair = await ConnectionPair.CreateWithQuietServerAsync();
        // The lane's run: oneways 0..9, all in the ring before the lane looks.
        SendHoldingTheRole(pair, () => ConnectionReceiveLaneTests.SendNumbered(pair.Client, 0, 10));

        using var inLane = new ManualResetEventSlim();
        using var releaseLane = new ManualResetEventSlim();
        using var inCall = new ManualResetEventSlim();
        using var releaseCall = new ManualResetEventSlim();
        var seen = new List<long>();

        Task laneThread = Task.Factory.StartNew(() =>
        {
            try
            {
                pair.Server.ReceiveBatch((_, in transaction) =>
                {
                    seen.Add(BinaryPrimitives.ReadInt64LittleEndian(transaction.Payload));
                    if (seen.Count == 1)
                    {
                        inLane.Set();
                        releaseLane.Wait();
                    }
                }, 0, PageRangeConnection.MaxReceiveBatch);
            }
            catch (Exception)
            {
                // The closed connection's answer to the loop after the lane: not what is tested.
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(inLane.Wait(TestTimeouts.Long), "the lane did not start");

        // A oneway routed behind the lane (to the backlog) and a call, taken by a second receiving thread.
        ConnectionReceiveLaneTests.SendNumbered(pair.Client, 100, 1);
        Task calling = Task.Run(() =>
        {
            try
            {
                pair.Client.Call(1, [1], TestTimeouts.Long).Dispose();
            }
            catch (Exception)
            {
                // The server closes.
            }
        });
        Task otherThread = Task.Factory.StartNew(() =>
        {
            try
            {
                pair.Server.ReceiveBatch((_, in transaction) =>
                {
                    if (transaction.IsTwoWay)
                    {
                        inCall.Set();
                        releaseCall.Wait();
                    }
                }, 0, PageRangeConnection.MaxReceiveBatch);
            }
            catch (Exception)
            {
                // Whatever the closed connection says afterwards.
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(inCall.Wait(TestTimeouts.Long), "the second receiver did not get the call");

        // More oneways, left in the ring; then the close, on a third thread, while the lane's handler still runs.
        // (The role is held across the close too, so that the pump's last pass does not route them.)
        Assert.True(SpinWait.SpinUntil(pair.Server.TryHoldReaderRoleForTest, TestTimeouts.Short), "the reader role was taken");
        try
        {
            ConnectionReceiveLaneTests.SendNumbered(pair.Client, 200, 10);
            await Task.Run(pair.Server.Dispose).WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            pair.Server.ReleaseReaderRoleForTest();
        }

        // The second receiver's loop comes back to TryRunLane (oneway no longer "in progress") and reads the ring.
        releaseCall.Set();
        await otherThread.WaitAsync(TestTimeouts.Long);
        releaseLane.Set();
        await laneThread.WaitAsync(TestTimeouts.Long);
        await calling.WaitAsync(TestTimeouts.Long);

        // The lane took 0..9: it must hand out exactly those (or stop), never another receiver's records.
        Assert.True(seen.All(number => number is >= 0 and <= 9), $"the lane handed out {string.Join(", ", seen)}");
    }

    [Fact]
    public async Task LaneStaleCopy_ReadOnAnotherThread_NeverReturnsALaterMessage()
    {
        // Transaction.Slot checks the generation, then the caller reads slot.Record: for the lane slot the record is
        // rewritten for the next message right after the handler returns, so a copy read on another thread at that
        // moment passes the check and reads the next message (the contract: it throws ObjectDisposedException).
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        const int count = 200_000;
        Task sending = Task.Run(() => ConnectionReceiveLaneTests.SendNumbered(pair.Client, 0, count));
        var state = new StaleReads();
        Task reading = Task.Factory.StartNew(() =>
        {
            while (!state.Done)
            {
                Tuple<Transaction, long>? copy = Volatile.Read(ref state.Copy);
                if (copy is null)
                {
                    continue;
                }
                try
                {
                    long number = BinaryPrimitives.ReadInt64LittleEndian(copy.Item1.Payload);
                    // Checked again after the read: a thread preempted between the check and the read may read a buffer
                    // freed and reused since (a pack the writer recycled), which only a check after the read tells
                    // apart. A copy that reads the next record while its generation is still live fails both checks.
                    Interlocked.MemoryBarrier();
                    _ = copy.Item1.Payload.Length;
                    if (number != copy.Item2)
                    {
                        state.Error ??= $"a copy of oneway {copy.Item2} read oneway {number}'s payload";
                    }
                }
                catch (ObjectDisposedException)
                {
                }
            }
        }, TaskCreationOptions.LongRunning);
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        try
        {
            while (state.Seen < count)
            {
                pair.Server.ReceiveBatch(static (state, in transaction) =>
                {
                    long number = BinaryPrimitives.ReadInt64LittleEndian(transaction.Payload);
                    state.Seen++;
                    Volatile.Write(ref state.Copy, Tuple.Create(transaction, number));
                }, state, PageRangeConnection.MaxReceiveBatch, bound.Token);
            }
        }
        finally
        {
            state.Done = true;
            await reading.WaitAsync(TestTimeouts.Long);
        }
        await sending.WaitAsync(TestTimeouts.Long);
        Assert.True(pair.Server.LaneCounts.Messages > 0, "no lane ran");
        Assert.Null(state.Error);
    }

    [Fact]
    public async Task LaneStaleCopy_ReadWhileTheNextRecordIsInTheSlot_ThrowsNotTheNextPayload()
    {
        // The lane ends a message's generation before it stores the next record in the slot: a stale handle read between
        // the next record's store and its generation (the hook) sees the end. Ending it only with the next message's
        // generation would let the stale handle read the next message's payload there: deterministic, one thread.
        await using ConnectionPair pair = await ConnectionPair.CreateWithQuietServerAsync();
        SendHoldingTheRole(pair, () => ConnectionReceiveLaneTests.SendNumbered(pair.Client, 0, 3));
        var state = new StaleAtStore();
        pair.Server.LaneRecordStoredForTest = () =>
        {
            if (state.Kept is not { } stale)
            {
                return;
            }
            try
            {
                state.Outcomes.Add($"read {BinaryPrimitives.ReadInt64LittleEndian(stale.Payload)} (code {stale.Code})");
            }
            catch (ObjectDisposedException)
            {
                state.Outcomes.Add("disposed");
            }
        };
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        int handled = 0;
        while (handled < 3)
        {
            handled += pair.Server.ReceiveBatch(static (state, in transaction) =>
            {
                // Kept past the handler, never disposed by it: the lane ends it.
                state.Kept = transaction;
                state.Numbers.Add(BinaryPrimitives.ReadInt64LittleEndian(transaction.Payload));
            }, state, PageRangeConnection.MaxReceiveBatch, bound.Token);
        }

        Assert.Equal([0L, 1L, 2L], state.Numbers);
        Assert.True(pair.Server.LaneCounts.Messages > 0, "no lane ran");
        // One look per message after the first one handled in a lane; every one must see the kept handle ended.
        Assert.NotEmpty(state.Outcomes);
        Assert.All(state.Outcomes, outcome => Assert.Equal("disposed", outcome));
    }

    private sealed class StaleAtStore
    {
        internal Transaction? Kept;
        internal List<long> Numbers { get; } = [];
        internal List<string> Outcomes { get; } = [];
    }

    private sealed class StaleReads
    {
        internal int Seen;
        internal Tuple<Transaction, long>? Copy;
        internal volatile bool Done;
        internal string? Error;
    }

    private static void SendHoldingTheRole(ConnectionPair pair, Action send)
    {
        Assert.True(SpinWait.SpinUntil(pair.Server.TryHoldReaderRoleForTest, TestTimeouts.Short), "the reader role was taken");
        try
        {
            send();
        }
        finally
        {
            pair.Server.ReleaseReaderRoleForTest();
        }
    }
}
