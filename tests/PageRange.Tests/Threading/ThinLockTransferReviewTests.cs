using PageRange.Tests.Infrastructure;
using PageRange.Threading;
using static PageRange.Tests.Threading.ThinLockThreads;

namespace PageRange.Tests.Threading;

/// <summary>
/// Review probes of the bias moving between threads (<see cref="ThinLock.BiasGrant"/>): what a move allocates, and the
/// one race the new grant per move exists for (an old owner preempted on its fast path, between reading the grant and
/// storing its <c>Held</c>, while another thread revokes it and earns the bias).
/// </summary>
public sealed class ThinLockTransferReviewTests(ITestOutputHelper output)
{
    /// <summary>
    /// The hot path's "0 bytes in steady state": earning the bias on a fresh lock takes up the placeholder, and earning it
    /// back after a revocation takes up the thread's own grant; only a move to another thread allocates (one grant).
    /// </summary>
    [BiasFact]
    public void Enter_EarningTheBiasFreshAndBackAfterARevocation_AllocatesNothing_AMoveAllocatesOneGrant()
    {
        // The thread static holding the id is allocated at a thread's first lock (272 B, once): not what a bias costs.
        var warm = new ThinLock();
        warm.Enter();
        warm.Exit();

        var gate = new ThinLock();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        long fresh = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(gate.IsBiasedToCurrentThread);

        // Revoked once by another thread that takes it once: then earned back.
        Assert.True(TryEnterOnAnotherThread(gate));
        Assert.Equal(1, gate.Revocations);
        Assert.False(gate.IsBiasedToCurrentThread);
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 2 * ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        long back = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(gate.IsBiasedToCurrentThread);

        // A move: another thread earns it (a new grant, on that thread), then this one earns it back (another new grant:
        // its own old grant is not current any more). Spaced beyond the 50 ms after which revocations stop doubling.
        long moved = -1;
        Thread.Sleep(60);
        var other = new Thread(() =>
        {
            warm.Enter();
            warm.Exit();
            long start = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < 2 * ThinLock.BiasAfter; i++)
            {
                gate.Enter();
                gate.Exit();
            }
            moved = gate.IsBiasedToCurrentThread ? GC.GetAllocatedBytesForCurrentThread() - start : -1;
        })
        { IsBackground = true, Name = "other" };
        other.Start();
        Assert.True(other.Join(TestTimeouts.Long));
        Thread.Sleep(60);
        before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 2 * ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        long movedBack = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(gate.IsBiasedToCurrentThread);

        Assert.Equal(0, fresh);
        Assert.Equal(0, back);
        Assert.Equal(32, moved);
        Assert.Equal(32, movedBack);
        Assert.Equal(3, gate.Revocations);
    }

    private sealed class Round
    {
        public readonly ThinLock Gate = new();
        public int Holder;
        public long Count;
        public int BiasedTo;
        public int Moves;
    }

    /// <summary>
    /// The race a move must survive, provoked: two threads hammer a lock with the smallest possible section, so a bias
    /// owner preempted (a third, spinning thread keeps both cores oversubscribed) is often preempted on its fast path,
    /// and the other thread, running alone meanwhile, revokes its grant and earns the bias in its place. Fresh locks
    /// every 20 ms keep revocations from doubling the streak a bias needs out of reach. A stale fast path that entered by
    /// a grant now another thread's would be inside with it (the holder tag changes under it, or the counts disagree),
    /// or leave by the owner word it does not hold (an exception), or leave the other's Held set (a revoker waits for
    /// ever: the join times out). Checked to fail when a move takes the old owner's grant up instead of a new one.
    /// </summary>
    [BiasFact]
    public void Enter_BiasOwnerPreemptedOnItsFastPathWhileTheOtherThreadEarnsTheBias_NoTwoThreadsAreEverInside()
    {
        Round current = new();
        int stop = 0;
        int overlaps = 0;
        int moves = 0;
        int rounds = 0;
        long[] entries = new long[2];
        long counted = 0;
        Exception? failure = null;

        var workers = new Thread[2];
        for (int w = 0; w < workers.Length; w++)
        {
            int me = w + 1;
            workers[w] = new Thread(() =>
            {
                long mine = 0;
                try
                {
                    while (Volatile.Read(ref stop) == 0)
                    {
                        Round round = Volatile.Read(ref current);
                        ThinLock gate = round.Gate;
                        for (int i = 0; i < 1024; i++)
                        {
                            gate.Enter();
                            round.Holder = me;
                            round.Count++;
                            if (round.Holder != me)
                            {
                                Interlocked.Increment(ref overlaps);
                            }
                            if ((i & 63) == 0 && gate.IsBiasedToCurrentThread && round.BiasedTo != me)
                            {
                                // Written under the lock: the bias went from one worker to the other within this round.
                                if (round.BiasedTo != 0)
                                {
                                    round.Moves++;
                                }
                                round.BiasedTo = me;
                            }
                            gate.Exit();
                            mine++;
                        }
                    }
                }
                catch (Exception error)
                {
                    failure ??= error;
                    Volatile.Write(ref stop, 1);
                }
                entries[me - 1] = mine;
            })
            { IsBackground = true, Name = $"worker-{me}" };
        }
        var hog = new Thread(() =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                Thread.SpinWait(50);
            }
        })
        { IsBackground = true, Name = "hog" };

        var retired = new List<Round>();
        foreach (Thread worker in workers)
        {
            worker.Start();
        }
        hog.Start();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.ElapsedMilliseconds < 2500 && Volatile.Read(ref stop) == 0)
        {
            Thread.Sleep(20);
            retired.Add(Volatile.Read(ref current));
            Volatile.Write(ref current, new Round());
            rounds++;
        }
        Volatile.Write(ref stop, 1);
        bool joined = workers.All(worker => worker.Join(TimeSpan.FromSeconds(10)));
        Assert.True(hog.Join(TestTimeouts.Long));
        Assert.True(joined, $"a worker never got the lock: a Held left set on a grant, or a lock left held (first failure: {failure})");
        Assert.Null(failure);
        retired.Add(current);
        foreach (Round round in retired)
        {
            counted += round.Count;
            moves += round.Moves;
        }

        output.WriteLine($"{moves} moves in {rounds} rounds, {entries[0]} + {entries[1]} entries, {Volatile.Read(ref overlaps)} overlaps, counted {counted}");
        Assert.Equal(0, Volatile.Read(ref overlaps));
        Assert.Equal(entries[0] + entries[1], counted);
        // The test reached the path it is about: the bias moved between the workers, many times.
        Assert.True(moves > rounds / 4, $"only {moves} moves in {rounds} rounds");
    }
}
