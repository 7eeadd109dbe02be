using PageRange.Tests.Infrastructure;
using PageRange.Threading;

namespace PageRange.Tests.Threading;

/// <summary>The message path's lock: exclusive, re-entrant, and blocking on it allocates nothing (System.Threading.Lock's first block does).</summary>
public sealed class MonitorLockTests
{
    [Fact]
    public void Enter_HeldByAnotherThread_BlocksUntilExitAndAllocatesNothingOnTheBlockedThread()
    {
        var gate = new MonitorLock();
        const int Rounds = 3;
        long[] allocated = new long[Rounds];
        int held = 0;
        int trying = 0;
        int entered = 0;
        var waiter = new Thread(() =>
        {
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
        Assert.All(allocated, bytes => Assert.Equal(0, bytes));
    }

    [Fact]
    public void TryEnterAndScope_AnotherThreadHolds_FailsThenSucceedsAfterTheScopeEnds()
    {
        var gate = new MonitorLock();
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
        var after = new Thread(() =>
        {
            taken = gate.TryEnter();
            if (taken)
            {
                gate.Exit();
            }
        });
        after.Start();
        Assert.True(after.Join(TestTimeouts.Long));
        Assert.True(taken);
    }
}
