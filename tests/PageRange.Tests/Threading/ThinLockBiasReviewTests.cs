using PageRange.Tests.Infrastructure;
using PageRange.Threading;

namespace PageRange.Tests.Threading;

/// <summary>
/// Review probes of the biased <see cref="ThinLock"/> (1d914c7): ways a hold leaks when a step between taking the owner
/// word and holding the lock is interrupted, or when a scope's hold changes kind under it.
/// </summary>
public sealed class ThinLockBiasReviewTests
{
    /// <summary>
    /// A scope entered by the bias remembers that; <see cref="ThinLock.YieldToWaiters"/> inside it lets a revoker in and
    /// takes the lock back by the owner word. The scope's exit must then release the owner word, not the bias.
    /// </summary>
    [Fact]
    public void Dispose_BiasedScopeWhoseHoldYieldToWaitersTurnedIntoTheOwnerWord_ReleasesTheLock()
    {
        ThinLock gate = BiasedToCurrentThread();
        int entered = 0;
        var revoker = new Thread(() =>
        {
            gate.Enter();
            Volatile.Write(ref entered, 1);
            gate.Exit();
        })
        { IsBackground = true, Name = "revoker" };

        using (gate.EnterScope())
        {
            revoker.Start();
            // The revoker holds the owner word and waits for our bias hold to end.
            Assert.True(Poll.SpinUntil(() => gate.Revocations == 1), "the other thread never revoked the bias");
            gate.YieldToWaiters();
            Assert.Equal(1, Volatile.Read(ref entered));
            Assert.True(gate.IsHeldByCurrentThread);
        }
        Assert.True(revoker.Join(TestTimeouts.Long));

        Assert.False(gate.IsHeldByCurrentThread, "the scope's exit left the owner word held");
        Assert.True(TryEnterOnAnotherThread(gate), "the lock stayed held after the scope's exit");
    }

    /// <summary>
    /// A thread that took the owner word and waits for the bias owner to leave is interrupted in that wait (its SpinWait
    /// sleeps, which <see cref="Thread.Interrupt"/> breaks). It throws out of <see cref="ThinLock.Enter"/>, holding
    /// nothing as far as its caller knows: the owner word must not stay taken.
    /// </summary>
    [Fact]
    public void Enter_RevokerInterruptedWhileWaitingForTheBiasOwner_ThrowsAndLeavesTheLockFree()
    {
        ThinLock gate = BiasedToCurrentThread();
        Exception? error = null;
        var revoker = new Thread(() =>
        {
            try
            {
                gate.Enter();
                gate.Exit();
            }
            catch (ThreadInterruptedException interrupted)
            {
                error = interrupted;
            }
        })
        { IsBackground = true, Name = "revoker" };

        using (gate.EnterScope())
        {
            revoker.Start();
            Assert.True(Poll.SpinUntil(() => gate.Revocations == 1), "the other thread never revoked the bias");
            // Long enough for its SpinWait to reach the sleeps.
            Thread.Sleep(50);
            revoker.Interrupt();
            revoker.Join(TimeSpan.FromSeconds(5));
        }
        Assert.True(revoker.Join(TestTimeouts.Long));

        if (error is not null)
        {
            // Interrupted in the wait: the exception is the lock's answer, as for a parked waiter; the lock is free.
            Assert.IsType<ThreadInterruptedException>(error);
        }
        Assert.True(TryEnterOnAnotherThread(gate), "the interrupted revoker's owner word stayed taken");
        Assert.True(gate.TryEnter(), "the former bias owner cannot take the lock back");
        gate.Exit();
    }

    private static bool TryEnterOnAnotherThread(ThinLock gate)
    {
        bool taken = false;
        var other = new Thread(() =>
        {
            taken = gate.TryEnter();
            if (taken)
            {
                gate.Exit();
            }
        })
        { IsBackground = true, Name = "try" };
        other.Start();
        Assert.True(other.Join(TestTimeouts.Long));
        return taken;
    }

    private static ThinLock BiasedToCurrentThread()
    {
        var gate = new ThinLock();
        for (int i = 0; i < ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        Assert.True(gate.IsBiasedToCurrentThread);
        return gate;
    }
}
