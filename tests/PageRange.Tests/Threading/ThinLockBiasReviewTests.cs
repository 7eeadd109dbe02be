using System.Runtime.CompilerServices;
using PageRange.Tests.Infrastructure;
using PageRange.Threading;
using static PageRange.Tests.Threading.ThinLockThreads;

namespace PageRange.Tests.Threading;

/// <summary>
/// The biased <see cref="ThinLock"/> where a review found holds could leak (a step between taking the owner word and
/// holding the lock interrupted, a scope's hold changing kind under it), and a revocation raced against the bias
/// owner's tight loop on many fresh locks (it fails without the revocation's process-wide barrier).
/// </summary>
public sealed class ThinLockBiasReviewTests
{
    /// <summary>
    /// A scope entered by the bias remembers that; <see cref="ThinLock.YieldToWaiters"/> inside it lets a revoker in and
    /// takes the lock back by the owner word. The scope's exit must then release the owner word, not the bias.
    /// </summary>
    [BiasFact]
    public void Dispose_BiasedScopeWhoseHoldYieldToWaitersTurnedIntoTheOwnerWord_ReleasesTheLock()
    {
        ThinLock gate = BiasedToCurrentThread();
        Thread revoker;
        using (gate.EnterScope())
        {
            (revoker, StrongBox<int> entered) = StartEnterer(gate, "revoker");
            // The revoker holds the owner word and waits for our bias hold to end.
            Assert.True(Poll.SpinUntil(() => gate.Revocations == 1), "the other thread never revoked the bias");
            gate.YieldToWaiters();
            Assert.Equal(1, Volatile.Read(ref entered.Value));
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
    [BiasFact]
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

        // Interrupted in the wait: the exception is the lock's answer, as for a parked waiter; the lock is free.
        Assert.IsType<ThreadInterruptedException>(error);
        Assert.True(TryEnterOnAnotherThread(gate), "the interrupted revoker's owner word stayed taken");
        Assert.True(gate.TryEnter(), "the former bias owner cannot take the lock back");
        gate.Exit();
    }

    /// <summary>
    /// The Dekker race itself, as often as possible: each round a fresh lock (no revocation history) is biased to one
    /// thread, which then enters and leaves it by its bias in a tight loop while another thread takes it once, revoking
    /// the bias at a random moment of that loop. Two threads inside at once lose an increment of a plain counter.
    /// The existing stress test revokes a handful of times per run (the doubling threshold keeps the owner from
    /// earning the bias back); this one revokes once per round, thousands of times.
    /// </summary>
    [BiasFact]
    public void Enter_RevocationRacingTheBiasOwnersTightLoop_ManyFreshLocks_NoTwoThreadsAreEverInside()
    {
        const int Rounds = 4000;
        ThinLock? current = null;
        int round = 0;
        int raided = 0;
        int unrevoked = 0;
        long counter = 0;
        long expected = 0;
        int ownerBiasedEntries = 0;

        void Section()
        {
            long seen = Volatile.Read(ref counter);
            Thread.SpinWait(2);
            Volatile.Write(ref counter, seen + 1);
        }

        var owner = new Thread(() =>
        {
            for (int r = 1; r <= Rounds; r++)
            {
                var gate = new ThinLock();
                for (int i = 0; i < ThinLock.BiasAfter; i++)
                {
                    gate.Enter();
                    gate.Exit();
                }
                Volatile.Write(ref current, gate);
                Volatile.Write(ref round, r);
                long mine = 0;
                while (Volatile.Read(ref raided) != r)
                {
                    using (gate.EnterScope())
                    {
                        if (gate.IsBiasedToCurrentThread)
                        {
                            ownerBiasedEntries++;
                        }
                        Section();
                    }
                    mine++;
                }
                Interlocked.Add(ref expected, mine);
            }
        })
        { IsBackground = true, Name = "bias-owner" };

        var raider = new Thread(() =>
        {
            var random = new Random(7);
            for (int r = 1; r <= Rounds; r++)
            {
                while (Volatile.Read(ref round) != r)
                {
                    Thread.SpinWait(1);
                }
                ThinLock gate = Volatile.Read(ref current)!;
                Thread.SpinWait(random.Next(0, 64));
                gate.Enter();
                Section();
                gate.Exit();
                Interlocked.Increment(ref expected);
                if (gate.Revocations != 1)
                {
                    Interlocked.Increment(ref unrevoked);
                }
                Volatile.Write(ref raided, r);
            }
        })
        { IsBackground = true, Name = "raider" };

        owner.Start();
        raider.Start();
        Assert.True(owner.Join(TestTimeouts.Long));
        Assert.True(raider.Join(TestTimeouts.Long));
        Assert.Equal(0, unrevoked);
        Assert.Equal(Volatile.Read(ref expected), Volatile.Read(ref counter));
        Assert.True(ownerBiasedEntries > Rounds, $"the owner entered by its bias only {ownerBiasedEntries} times");
    }
}
