using PageRange.Server;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Server;

/// <summary>
/// The server's worker pool, which now takes every call from the sessions' own receiving threads: every item queued from
/// many threads at once runs exactly once, the pool grows to its maximum under blocked work and shrinks back to its
/// minimum after the idle timeout, and stopping ends every worker.
/// </summary>
public sealed class ServerWorkerPoolTests
{
    [Fact]
    public async Task ItemsFromManyThreads_EachRunsOnce()
    {
        const int Producers = 8;
        const int PerProducer = 2000;
        int ran = 0;
        var pool = new ServerWorkerPool("test", 1, 4, TimeSpan.FromSeconds(30), _ => Interlocked.Increment(ref ran));
        pool.Start();
        try
        {
            using var start = new Barrier(Producers);
            Task[] producers = [.. Enumerable.Range(0, Producers).Select(_ => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                for (int i = 0; i < PerProducer; i++)
                {
                    pool.Enqueue(default);
                }
            }, TaskCreationOptions.LongRunning))];
            await Task.WhenAll(producers).WaitAsync(TestTimeouts.Long);
            await WaitUntilAsync(() => Volatile.Read(ref ran) == Producers * PerProducer);
            Assert.Equal(0, pool.QueueLength);
        }
        finally
        {
            pool.Stop();
            await pool.Completion.WaitAsync(TestTimeouts.Long);
            pool.Dispose();
        }
        Assert.Equal(Producers * PerProducer, ran);
    }

    [Fact]
    public async Task AWorkerThatCannotStart_EnqueueDoesNotThrow_TheCountIsGivenBack_ThePoolGrowsLater()
    {
        // A thread or pid limit: the runtime throws OutOfMemoryException when it cannot create a thread. Thrown out of
        // Enqueue, it ended the session of the client whose call asked for the spawn; counted, the phantom workers kept
        // the pool from ever growing again.
        using var release = new ManualResetEventSlim();
        int ran = 0;
        var failures = new List<Exception>();
        var pool = new ServerWorkerPool("test", 1, 4, TimeSpan.FromSeconds(30), _ =>
        {
            release.Wait();
            Interlocked.Increment(ref ran);
        }, error =>
        {
            lock (failures)
            {
                failures.Add(error);
            }
        });
        pool.Start();
        try
        {
            Assert.Equal(1, pool.ThreadCount);
            pool.StartFaultForTest = () => new InvalidOperationException("test: the thread limit");
            for (int i = 0; i < 4; i++)
            {
                pool.Enqueue(default);
            }
            Assert.Equal(1, pool.ThreadCount);
            Assert.True(pool.SpawnFailureCount >= 3, $"{pool.SpawnFailureCount} spawns failed");
            lock (failures)
            {
                Assert.Equal(pool.SpawnFailureCount, failures.Count);
                Assert.All(failures, error => Assert.IsType<InvalidOperationException>(error));
            }

            // The limit is gone: the next item spawns workers up to the maximum, and everything queued runs.
            pool.StartFaultForTest = null;
            pool.Enqueue(default);
            await WaitUntilAsync(() => pool.ThreadCount > 1);
            release.Set();
            await WaitUntilAsync(() => Volatile.Read(ref ran) == 5);
            Assert.InRange(pool.ThreadCount, 2, 4);
        }
        finally
        {
            release.Set();
            pool.Stop();
            await pool.Completion.WaitAsync(TestTimeouts.Long);
            pool.Dispose();
        }
    }

    [Fact]
    public async Task Start_AMinimumWorkerCannotStart_ThrowsAndTheStartedOnesExit()
    {
        int starts = 0;
        var pool = new ServerWorkerPool("test", 3, 4, TimeSpan.FromSeconds(30), _ => { })
        {
            StartFaultForTest = () => ++starts == 2 ? new InvalidOperationException("test: the thread limit") : null,
        };
        Assert.Throws<InvalidOperationException>(pool.Start);
        await pool.Completion.WaitAsync(TestTimeouts.Long);
        Assert.Equal(0, pool.ThreadCount);
        Assert.Equal(1, pool.SpawnFailureCount);
        pool.Dispose();
    }

    [Fact]
    public async Task BlockedWork_GrowsToTheMaximum_IdleWorkersRetireToTheMinimum_StopEndsThemAll()
    {
        using var release = new ManualResetEventSlim();
        int running = 0;
        var pool = new ServerWorkerPool("test", 1, 4, TimeSpan.FromMilliseconds(200), _ =>
        {
            Interlocked.Increment(ref running);
            release.Wait();
            Interlocked.Decrement(ref running);
        });
        pool.Start();
        try
        {
            for (int i = 0; i < 6; i++)
            {
                pool.Enqueue(default);
            }
            // Four workers block; two items wait for one of them.
            await WaitUntilAsync(() => Volatile.Read(ref running) == 4);
            Assert.Equal(4, pool.ThreadCount);
            Assert.Equal(2, pool.QueueLength);

            release.Set();
            await WaitUntilAsync(() => pool.QueueLength == 0 && Volatile.Read(ref running) == 0);
            // Idle past the timeout: back to the minimum, and the one left still takes work.
            await WaitUntilAsync(() => pool.ThreadCount == 1);
            pool.Enqueue(default);
            await WaitUntilAsync(() => pool.QueueLength == 0 && Volatile.Read(ref running) == 0);
        }
        finally
        {
            release.Set();
            pool.Stop();
            await pool.Completion.WaitAsync(TestTimeouts.Long);
            pool.Dispose();
        }
        Assert.Equal(0, pool.ThreadCount);
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        DateTime deadline = DateTime.UtcNow + TestTimeouts.Long;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "The condition did not become true in time.");
            await Task.Delay(5);
        }
    }
}
