using System.Diagnostics;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// A blocking unary call, answered by a handler that completes synchronously, needs no thread-pool thread on either
/// side: the caller reads its own reply, the server's session thread receives the call and a worker of the server's
/// own pool runs the handler and writes the reply. So it completes while every thread of the pool is blocked (before,
/// the session's asynchronous receive resumed on the pool, and each call waited for the pool to inject a thread).
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class GrpcThreadPoolStarvationTests
{
    private const int Calls = 50;

    [Fact]
    public async Task BlockingUnary_WhileTheThreadPoolIsStarved_CompletesAtOnce()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        Assert.Equal(2, client.Unary(new CoreMessage { Number = 1 }).Number);

        // Not disposable: blockers still queued when the test ends run (and return) later.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // More blockers than the pool has threads: every thread blocks, the rest wait in the queue, and the pool adds
        // threads slowly (about one or two a second), each of which takes a blocker too.
        int blockers = ThreadPool.ThreadCount + 16;
        for (int i = 0; i < blockers; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static state => ((Task)state!).Wait(), release.Task, preferLocal: false);
        }
        TimeSpan took;
        long pendingAfter;
        Exception? failure = null;
        // The calls run on a thread of our own: the test's own thread may be one of the pool's.
        var caller = new Thread(() =>
        {
            try
            {
                for (int i = 0; i < Calls; i++)
                {
                    Assert.Equal(i + 1, client.Unary(new CoreMessage { Number = i }).Number);
                }
            }
#pragma warning disable CA1031 // Reported to the test below.
            catch (Exception error)
#pragma warning restore CA1031
            {
                failure = error;
            }
        });
        Stopwatch watch = Stopwatch.StartNew();
        try
        {
            caller.Start();
            Assert.True(caller.Join(TestTimeouts.Long), "the blocking calls did not complete while the thread pool was starved");
            took = watch.Elapsed;
            pendingAfter = ThreadPool.PendingWorkItemCount;
        }
        finally
        {
            release.SetResult();
        }
        Assert.Null(failure);
        Assert.True(took < TimeSpan.FromSeconds(5), $"{Calls} blocking calls took {took.TotalMilliseconds:F0} ms with the thread pool starved");
        // The pool was still starved when the calls ended: blockers were still waiting for a thread.
        Assert.True(pendingAfter > 0, $"the thread pool was not starved during the calls ({pendingAfter} items pending)");
    }
}
