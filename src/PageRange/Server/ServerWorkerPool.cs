using System.Collections.Concurrent;
using PageRange.Diagnostics;

namespace PageRange.Server;

/// <summary>
/// The dedicated threads that run every client's handlers: at least <c>min</c>, grown on demand up to <c>max</c> when
/// work is queued and no worker is idle (binder's <c>BR_SPAWN_LOOPER</c>), and those beyond <c>min</c> retire after
/// waiting idle for the idle timeout.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="Enqueue"/> may be called from any thread. The semaphore's count is the number of queued
/// items, so a worker that wakes always finds one (or the stop signal). Races here only cost an extra or a late spawn,
/// never a lost item: at least one worker (min &gt;= 1) always waits on the semaphore.
/// </remarks>
internal sealed class ServerWorkerPool : IDisposable
{
    private readonly ConcurrentQueue<ServerWorkItem> _queue = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Action<ServerWorkItem> _run;
    private readonly int _min;
    private readonly int _max;
    private readonly TimeSpan _idleTimeout;
    private readonly string _name;
    private readonly TaskCompletionSource _allExited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _threads;
    private int _idle;
    private int _pending;
    private int _peak;
    private int _spawned;
    private volatile bool _stopping;

    private readonly Action<Exception>? _spawnFailed;
    private int _spawnFailures;

    internal ServerWorkerPool(string name, int min, int max, TimeSpan idleTimeout, Action<ServerWorkItem> run, Action<Exception>? spawnFailed = null)
    {
        _name = name;
        _min = min;
        _max = max;
        _idleTimeout = idleTimeout;
        _run = run;
        _spawnFailed = spawnFailed;
    }

    /// <summary>Worker threads that could not be started (a thread or pid limit), each given back to the count.</summary>
    internal int SpawnFailureCount => Volatile.Read(ref _spawnFailures);

    /// <summary>Throws in place of the next thread starts while set (tests: a pid limit reached).</summary>
    internal Func<Exception?>? StartFaultForTest { get; set; }

    /// <summary>Live worker threads.</summary>
    internal int ThreadCount => Volatile.Read(ref _threads);

    /// <summary>The most worker threads alive at once so far.</summary>
    internal int PeakThreadCount => Volatile.Read(ref _peak);

    /// <summary>Worker threads started so far, retired ones included.</summary>
    internal int SpawnedCount => Volatile.Read(ref _spawned);

    /// <summary>Items waiting for a worker.</summary>
    internal int QueueLength => _queue.Count;

    /// <summary>Completes when every worker has exited after <see cref="Stop"/>.</summary>
    internal Task Completion => _allExited.Task;

    /// <summary>Starts the minimum of workers.</summary>
    /// <exception cref="OutOfMemoryException">A worker could not be started (the process's thread or pid limit): the
    /// server cannot serve, so its start fails; the workers started so far exit.</exception>
    internal void Start()
    {
        for (int i = 0; i < _min; i++)
        {
            if (TrySpawn() is { } failure)
            {
                Stop();
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            }
        }
    }

    /// <summary>Queues <paramref name="item"/>; spawns a worker if none is idle and the pool may grow.</summary>
    internal void Enqueue(ServerWorkItem item)
    {
        _queue.Enqueue(item);
        Interlocked.Increment(ref _pending);
        _signal.Release();
        // binder's BR_SPAWN_LOOPER: more work waits than there are threads waiting for work. (A woken worker counts as
        // idle until it takes its item, so comparing with the queue, not with zero, is what sees a busy pool.)
        if (Volatile.Read(ref _pending) > Volatile.Read(ref _idle))
        {
            // Never throws: a worker that cannot start is reported, and the item waits for the workers there are.
            _ = TrySpawn();
        }
    }

    /// <summary>Lets the workers finish what is queued, then exit.</summary>
    internal void Stop()
    {
        _stopping = true;
        // One wake per possible worker: each finds the queue empty and the stop flag, and exits.
        _signal.Release(_max);
        if (Volatile.Read(ref _threads) == 0)
        {
            _allExited.TrySetResult();
        }
    }

    /// <summary>Frees the wake-up semaphore once every worker has exited; before that, does nothing.</summary>
    public void Dispose()
    {
        if (_allExited.Task.IsCompleted)
        {
            _signal.Dispose();
        }
    }

    /// <summary>Starts a worker if the pool may grow.</summary>
    /// <returns>Why a worker could not be started (given back to the count, reported), or <see langword="null"/>.</returns>
    private Exception? TrySpawn()
    {
        while (true)
        {
            int threads = Volatile.Read(ref _threads);
            if (threads >= _max || _stopping)
            {
                return null;
            }
            if (Interlocked.CompareExchange(ref _threads, threads + 1, threads) == threads)
            {
                break;
            }
        }
        int spawned = Interlocked.Increment(ref _spawned);
        try
        {
            if (StartFaultForTest?.Invoke() is { } fault)
            {
                throw fault;
            }
            var thread = new Thread(WorkerLoop)
            {
                IsBackground = true,
                Name = $"PageRange server {_name} #{spawned}",
            };
            thread.Start();
        }
        catch (Exception error)
        {
            // A thread or pid limit (the runtime throws OutOfMemoryException when the thread cannot be created). The count
            // taken above is given back: a phantom worker would keep the pool from ever growing again, and the work
            // already queued waits for the workers there are. Thrown out of Enqueue, it ended the session of whichever
            // client's call happened to ask for the spawn (found by review).
            Interlocked.Decrement(ref _spawned);
            Interlocked.Increment(ref _spawnFailures);
            if (Interlocked.Decrement(ref _threads) == 0 && _stopping)
            {
                _allExited.TrySetResult();
            }
            _spawnFailed?.Invoke(error);
            return error;
        }
        UpdatePeak();
        PageRangeMetrics.RecordServerThreads(1);
        return null;
    }

    private void UpdatePeak()
    {
        int threads = Volatile.Read(ref _threads);
        int peak;
        while (threads > (peak = Volatile.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, threads, peak) != peak)
        {
        }
    }

    private void WorkerLoop()
    {
        bool retired = false;
        try
        {
            while (true)
            {
                Interlocked.Increment(ref _idle);
                bool signalled;
                try
                {
                    signalled = _signal.Wait(_idleTimeout);
                }
                finally
                {
                    Interlocked.Decrement(ref _idle);
                }
                if (signalled && _queue.TryDequeue(out ServerWorkItem item))
                {
                    Interlocked.Decrement(ref _pending);
                    _run(item);
                    continue;
                }
                if (_stopping && _queue.IsEmpty)
                {
                    return;
                }
                if (!signalled && TryRetire())
                {
                    retired = true;
                    return;
                }
            }
        }
        finally
        {
            PageRangeMetrics.RecordServerThreads(-1);
            // A retired worker counted itself out already (TryRetire).
            if ((retired ? Volatile.Read(ref _threads) : Interlocked.Decrement(ref _threads)) == 0 && _stopping)
            {
                _allExited.TrySetResult();
            }
        }
    }

    /// <summary>Leaves the pool if it has more than the minimum; the caller exits then.</summary>
    private bool TryRetire()
    {
        while (true)
        {
            int threads = Volatile.Read(ref _threads);
            if (threads <= _min)
            {
                return false;
            }
            // Counting ourselves out is the claim: two idle workers never both retire below the minimum.
            if (Interlocked.CompareExchange(ref _threads, threads - 1, threads) == threads)
            {
                return true;
            }
        }
    }
}
