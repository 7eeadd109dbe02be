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
