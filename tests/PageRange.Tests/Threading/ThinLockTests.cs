using System.Runtime.CompilerServices;
using PageRange.Tests.Infrastructure;
using PageRange.Threading;
using static PageRange.Tests.Threading.ThinLockThreads;

namespace PageRange.Tests.Threading;

/// <summary>
/// The message path's lock: exclusive (raced by threads that spin and park on it), re-entrant, released only by its
/// holder, and blocking on it allocates nothing (System.Threading.Lock's first block does).
/// </summary>
public sealed class ThinLockTests
{
    [Fact]
    public void Enter_HeldByAnotherThread_BlocksUntilExitAndAllocatesNothingOnTheBlockedThread()
    {
        var gate = new ThinLock();
        // The first blocked round warms up the blocking path: once, in a clean-clone run of the full suite (2026-12-05
        // 23:05), the waiter's first block allocated 8,104 B and the next two nothing, a one-off of the runtime's on a
        // thread's first wait (not located; probably something another test usually initialises first), not a cost of blocking.
        const int Rounds = 4;
        long[] allocated = new long[Rounds];
        int held = 0;
        int trying = 0;
        int entered = 0;
        int warmedUp = 0;
        var waiter = new Thread(() =>
        {
            // The thread's first use of any ThinLock reads its id once into a thread static, whose per-thread storage
            // the runtime allocates then (272 bytes, once per thread): not what blocking costs, so it comes first,
            // before the main thread takes the lock.
            gate.Enter();
            gate.Exit();
            Volatile.Write(ref warmedUp, 1);
            for (int i = 1; i <= Rounds; i++)
            {
                int round = i;
                if (!Poll.SpinUntil(() => Volatile.Read(ref held) == round))
                {
                    return;
                }
                long before = GC.GetAllocatedBytesForCurrentThread();
                Volatile.Write(ref trying, i);
                gate.Enter();
                gate.Exit();
                allocated[i - 1] = GC.GetAllocatedBytesForCurrentThread() - before;
                Volatile.Write(ref entered, i);
            }
        })
        { IsBackground = true, Name = "waiter" };

        int seenBlocked = 0;
        waiter.Start();
        Assert.True(Poll.SpinUntil(() => Volatile.Read(ref warmedUp) == 1), "the waiter never started");
        for (int i = 1; i <= Rounds; i++)
        {
            gate.Enter();
            try
            {
                Volatile.Write(ref held, i);
                int round = i;
                // Held until the waiter blocks in the kernel on it (a waiter still spinning is Running).
                if (Poll.SpinUntil(() => Volatile.Read(ref trying) == round && (waiter.ThreadState & ThreadState.WaitSleepJoin) != 0))
                {
                    seenBlocked++;
                }
                Assert.Equal(i - 1, Volatile.Read(ref entered));
            }
            finally
            {
                gate.Exit();
            }
            int done = i;
            Assert.True(Poll.SpinUntil(() => Volatile.Read(ref entered) == done), "the waiter never got the lock");
        }

        Assert.True(waiter.Join(TestTimeouts.Long));
        Assert.Equal(Rounds, seenBlocked);
        Assert.All(allocated[1..], bytes => Assert.Equal(0, bytes));
    }

    [Fact]
    public void TryEnterNonRecursive_HeldByThisThread_FailsAndAFreeLockIsTakenOnce()
    {
        var gate = new ThinLock();
        Assert.True(gate.TryEnterNonRecursive());
        // Held by this thread: no second hold (TryEnter would take one), and still refused to others.
        Assert.False(gate.TryEnterNonRecursive());
        Assert.False(TryEnterOnAnotherThread(gate));
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.True(TryEnterOnAnotherThread(gate));

        using (gate.EnterScope())
        {
            Assert.False(gate.TryEnterNonRecursive());
        }
        Assert.False(gate.IsHeldByCurrentThread);
    }

    [Fact]
    public void TryEnterAndScope_AnotherThreadHolds_FailsThenSucceedsAfterTheScopeEnds()
    {
        var gate = new ThinLock();
        bool taken = true;
        using (gate.EnterScope())
        {
            Assert.True(gate.IsHeldByCurrentThread);
            // Re-entrant on the holding thread, like Monitor.
            Assert.True(gate.TryEnter());
            gate.Exit();
            var other = new Thread(() => taken = gate.TryEnter());
            other.Start();
            Assert.True(other.Join(TestTimeouts.Long));
            Assert.False(taken);
        }
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.True(TryEnterOnAnotherThread(gate));
    }

    [Fact]
    public void Enter_RacingThreadsWithLongHolds_ExcludeEachOtherAndParkedThreadsAreWoken()
    {
        var gate = new ThinLock();
        const int Threads = 4;
        const int Rounds = 20_000;
        long counter = 0;
        int inside = 0;
        int overlaps = 0;
        var threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < Rounds; i++)
                {
                    gate.Enter();
                    try
                    {
                        if (Interlocked.Increment(ref inside) != 1)
                        {
                            Interlocked.Increment(ref overlaps);
                        }
                        // A plain read-modify-write: a second thread inside would lose increments.
                        long seen = counter;
                        if (i % 2_000 == id)
                        {
                            // Long enough for the others to finish spinning and park (and be woken by the release).
                            Thread.Sleep(2);
                        }
                        counter = seen + 1;
                        Interlocked.Decrement(ref inside);
                    }
                    finally
                    {
                        gate.Exit();
                    }
                }
            })
            { IsBackground = true, Name = $"racer {t}" };
        }
        foreach (Thread thread in threads)
        {
            thread.Start();
        }
        foreach (Thread thread in threads)
        {
            // A lost wake leaves a parked thread asleep for ever (the park has no timeout): the join times out.
            Assert.True(thread.Join(TestTimeouts.Long), "a thread never got the lock: a wake was lost");
        }

        Assert.Equal(0, overlaps);
        Assert.Equal((long)Threads * Rounds, counter);
        Assert.True(gate.Parks > 0, "no thread ever parked: the test did not reach the park path");
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.True(gate.TryEnter());
        gate.Exit();
    }

    [Fact]
    public void Exit_ByAThreadThatDoesNotHoldIt_ThrowsAndLeavesTheHolderHoldingIt()
    {
        var gate = new ThinLock();
        Assert.Throws<SynchronizationLockException>(gate.Exit);
        gate.Enter();
        Exception? error = null;
        var other = new Thread(() => error = Record.Exception(gate.Exit));
        other.Start();
        Assert.True(other.Join(TestTimeouts.Long));
        Assert.IsType<SynchronizationLockException>(error);
        Assert.True(gate.IsHeldByCurrentThread);
        bool taken = true;
        var after = new Thread(() => taken = gate.TryEnter());
        after.Start();
        Assert.True(after.Join(TestTimeouts.Long));
        Assert.False(taken);
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
    }

    [Fact]
    public void Enter_Twice_NeedsTwoExitsBeforeAnotherThreadGetsIt()
    {
        var gate = new ThinLock();
        gate.Enter();
        gate.Enter();
        gate.Exit();
        Assert.True(gate.IsHeldByCurrentThread);
        Assert.False(TryEnterOnAnotherThread(gate));
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.True(TryEnterOnAnotherThread(gate));
    }

    [Fact]
    public void YieldToWaiters_AThreadParkedOnIt_LetsItInBeforeTakingItBack()
    {
        var gate = new ThinLock();
        gate.Enter();
        (Thread waiter, StrongBox<int> entered) = StartEnterer(gate, "waiter");
        Assert.True(Poll.SpinUntil(() => gate.Parks == 1), "the waiter never parked");
        // A plain Exit and Enter would take the lock back before the pulsed waiter runs; a loaded machine may also delay
        // its wake past one yield's millisecond, hence a few tries.
        for (int i = 0; i < 100 && Volatile.Read(ref entered.Value) == 0; i++)
        {
            gate.YieldToWaiters();
        }
        Assert.Equal(1, Volatile.Read(ref entered.Value));
        Assert.True(gate.IsHeldByCurrentThread);
        gate.Exit();
        Assert.True(waiter.Join(TestTimeouts.Long));
    }

    [Fact]
    public void Enter_ParkedWaiterInterrupted_ThrowsAndTheOtherParkedWaiterStillGetsTheLock()
    {
        var gate = new ThinLock();
        Exception? interrupted = null;
        gate.Enter();
        var first = new Thread(() => interrupted = Record.Exception(gate.Enter)) { IsBackground = true, Name = "interrupted" };
        first.Start();
        (Thread second, StrongBox<int> secondEntered) = StartEnterer(gate, "second");
        Assert.True(Poll.SpinUntil(() => gate.Parks == 2), "the waiters never parked");
        first.Interrupt();
        Assert.True(first.Join(TestTimeouts.Long));
        Assert.IsType<ThreadInterruptedException>(interrupted);
        gate.Exit();
        Assert.True(second.Join(TestTimeouts.Long), "the second waiter never got the lock");
        Assert.Equal(1, Volatile.Read(ref secondEntered.Value));
        Assert.True(gate.TryEnter());
        gate.Exit();
    }
}
