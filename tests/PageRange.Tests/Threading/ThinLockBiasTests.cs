using System.Runtime.CompilerServices;
using PageRange.Tests.Infrastructure;
using PageRange.Threading;
using static PageRange.Tests.Threading.ThinLockThreads;

namespace PageRange.Tests.Threading;

/// <summary>
/// The lock's bias: a thread that takes it <see cref="ThinLock.BiasAfter"/> times in a row gets it without a locked
/// instruction; any other thread revokes that (a process-wide barrier) and waits for the bias owner to leave; a later
/// streak earns it again, by the same thread or another (a new grant); mutual exclusion holds throughout, raced by
/// threads on both paths.
/// </summary>
public sealed class ThinLockBiasTests
{
    [BiasFact]
    public void Enter_ByOneThreadBiasAfterTimes_BiasesItAndKeepsItReentrantAndReleasedOnlyByItsHolder()
    {
        var gate = new ThinLock();
        for (int i = 0; i < ThinLock.BiasAfter - 1; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        Assert.False(gate.IsBiasedToCurrentThread);

        gate.Enter();
        Assert.True(gate.IsBiasedToCurrentThread);
        Assert.True(gate.IsHeldByCurrentThread);
        using (gate.EnterScope())
        {
            Assert.True(gate.IsHeldByCurrentThread);
        }
        Assert.True(gate.IsHeldByCurrentThread);
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.Throws<SynchronizationLockException>(gate.Exit);
        Assert.Equal(0, gate.Revocations);
    }

    [BiasFact]
    public void TryEnterNonRecursive_ByTheBiasOwner_TakesItByTheBiasOnceAndFailsWhileInside()
    {
        ThinLock gate = BiasedToCurrentThread();
        Assert.True(gate.TryEnterNonRecursive());
        Assert.True(gate.IsBiasedToCurrentThread);
        Assert.False(gate.TryEnterNonRecursive());
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);

        gate.Enter();
        Assert.False(gate.TryEnterNonRecursive());
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.Equal(0, gate.Revocations);
    }

    [BiasFact]
    public void Enter_ByAnotherThreadWhileTheBiasOwnerIsInside_RevokesAndWaitsUntilItLeaves()
    {
        ThinLock gate = BiasedToCurrentThread();
        gate.Enter();
        (Thread other, StrongBox<int> entered) = StartEnterer(gate, "revoker");
        // The other thread revokes the bias (the count is written before its barrier), then waits for us.
        Assert.True(Poll.SpinUntil(() => gate.Revocations == 1), "the other thread never revoked the bias");
        Thread.Sleep(50);
        Assert.Equal(0, Volatile.Read(ref entered.Value));
        Assert.True(gate.IsHeldByCurrentThread);
        gate.Exit();
        Assert.True(other.Join(TestTimeouts.Long));
        Assert.Equal(1, Volatile.Read(ref entered.Value));

        // Revoked: the former bias owner now takes the owner word as anyone else, until it earns the bias back.
        gate.Enter();
        Assert.False(gate.IsBiasedToCurrentThread);
        gate.Exit();
        for (int i = 0; i < ThinLock.BiasAfter; i++)
        {
            gate.Enter();
            gate.Exit();
        }
        Assert.True(gate.IsBiasedToCurrentThread);
    }

    [BiasFact]
    public void TryEnterAndExit_ByAnotherThreadWhileTheBiasOwnerIsInside_FailAndLeaveTheOwnerInside()
    {
        ThinLock gate = BiasedToCurrentThread();
        using (gate.EnterScope())
        {
            bool? tried = null;
            Exception? exitError = null;
            var other = new Thread(() =>
            {
                try
                {
                    gate.Exit();
                }
                catch (SynchronizationLockException error)
                {
                    exitError = error;
                }
                tried = gate.TryEnter();
            })
            { IsBackground = true, Name = "intruder" };
            other.Start();
            Assert.True(other.Join(TestTimeouts.Long));
            Assert.IsType<SynchronizationLockException>(exitError);
            Assert.False(tried);
            // The try revoked the bias all the same, and we are still inside.
            Assert.Equal(1, gate.Revocations);
            Assert.True(gate.IsHeldByCurrentThread);
        }

        Assert.True(TryEnterOnAnotherThread(gate));
    }

    [BiasFact]
    public void Enter_AnotherThreadTakingItHardAfterARevocation_EarnsTheBiasAndTheOldOwnerRevokesIt()
    {
        ThinLock gate = BiasedToCurrentThread();
        bool biasedAtTheEnd = false;
        var other = new Thread(() =>
        {
            for (int i = 0; i < 4 * ThinLock.BiasAfter; i++)
            {
                gate.Enter();
                gate.Exit();
            }
            biasedAtTheEnd = gate.IsBiasedToCurrentThread;
        })
        { IsBackground = true, Name = "other" };
        other.Start();
        Assert.True(other.Join(TestTimeouts.Long));
        // A stream that moved to another thread: the bias moved with it (a new grant), after one revocation.
        Assert.True(biasedAtTheEnd);
        Assert.Equal(1, gate.Revocations);

        // The first owner's grant stays revoked: it takes the owner word, revoking the other thread's bias, and holds.
        Assert.False(gate.IsBiasedToCurrentThread);
        gate.Enter();
        Assert.True(gate.IsHeldByCurrentThread);
        Assert.False(gate.IsBiasedToCurrentThread);
        Assert.False(TryEnterOnAnotherThread(gate));
        gate.Exit();
        Assert.False(gate.IsHeldByCurrentThread);
        Assert.Equal(2, gate.Revocations);
    }

    /// <summary>
    /// A stream that moves from thread to thread (each turn 60 ms): each streamer earns the bias in turn and the old owner,
    /// still in its loop for a moment, is revoked; sections stay exclusive (an <see cref="ExclusionProbe"/>). The old
    /// owner's stale fast path across a move is provoked by
    /// <c>ThinLockTransferReviewTests.Enter_BiasOwnerPreemptedOnItsFastPathWhileTheOtherThreadEarnsTheBias_NoTwoThreadsAreEverInside</c>.
    /// </summary>
    [BiasFact]
    public void Enter_StreamMovingBetweenThreads_BiasMovesWithItAndNoTwoThreadsAreEverInside()
    {
        var gate = new ThinLock();
        var probe = new ExclusionProbe(pause: 5);
        int stop = 0;
        int turn = 0;
        var biasedEntries = new int[3];

        var streamers = new Thread[biasedEntries.Length];
        for (int t = 0; t < streamers.Length; t++)
        {
            int me = t;
            streamers[t] = new Thread(() =>
            {
                while (Volatile.Read(ref stop) == 0)
                {
                    if (Volatile.Read(ref turn) % streamers.Length != me)
                    {
                        // Not our turn. (Raids are Enter_BiasOwnerRacedBy...'s: here they would come within 50 ms of the
                        // turns' revocations and double the streak a bias needs until no turn earns it.)
                        Thread.Sleep(1);
                        continue;
                    }
                    for (int i = 0; i < 256; i++)
                    {
                        using (gate.EnterScope())
                        {
                            if (gate.IsBiasedToCurrentThread)
                            {
                                biasedEntries[me]++;
                            }
                            probe.Section();
                            if ((i & 15) == 0)
                            {
                                gate.Enter();
                                probe.Section();
                                gate.Exit();
                            }
                        }
                        probe.Expect((i & 15) == 0 ? 2 : 1);
                    }
                }
            })
            { IsBackground = true, Name = $"streamer-{t}" };
        }

        foreach (Thread streamer in streamers)
        {
            streamer.Start();
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.ElapsedMilliseconds < 3000)
        {
            // Turns long beside a streak of BiasAfter and beside the 50 ms after which a revocation stops doubling it.
            Thread.Sleep(60);
            Interlocked.Increment(ref turn);
        }
        Volatile.Write(ref stop, 1);
        foreach (Thread streamer in streamers)
        {
            Assert.True(streamer.Join(TestTimeouts.Long));
        }

        probe.AssertExclusive();
        // The bias moved: every streamer entered by it in some turn, and it was revoked time and again.
        Assert.All(biasedEntries, entries => Assert.True(entries > 0, $"a streamer never held the bias: {string.Join(", ", biasedEntries)}"));
        Assert.True(gate.Revocations >= streamers.Length, $"{gate.Revocations} revocations");
    }

    [BiasFact]
    public void Enter_TwoThreadsTakingItInTurn_NeverBiasesIt()
    {
        var gate = new ThinLock();
        int turn = 0;
        bool everBiased = false;
        var threads = new Thread[2];
        for (int t = 0; t < threads.Length; t++)
        {
            int me = t;
            threads[t] = new Thread(() =>
            {
                for (int i = 0; i < 2 * ThinLock.BiasAfter; i++)
                {
                    if (!Poll.SpinUntil(() => Volatile.Read(ref turn) % 2 == me))
                    {
                        return;
                    }
                    gate.Enter();
                    everBiased |= gate.IsBiasedToCurrentThread;
                    gate.Exit();
                    Interlocked.Increment(ref turn);
                }
            })
            { IsBackground = true, Name = $"turn-{t}" };
            threads[t].Start();
        }
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TestTimeouts.Long));
        }
        Assert.Equal(4 * ThinLock.BiasAfter, Volatile.Read(ref turn));
        Assert.False(everBiased);
        Assert.Equal(0, gate.Revocations);
    }

    [BiasFact]
    public void Enter_BiasAfterTimesInARowButSlowly_DoesNotBiasItAndLeavesItForAThreadThatUsesItHard()
    {
        var gate = new ThinLock();
        // A housekeeping thread's pace: 10 per millisecond is the least that earns the bias; this is a few per ms.
        bool slowBiased = true;
        var slow = new Thread(() =>
        {
            for (int i = 0; i < ThinLock.BiasAfter + 64; i++)
            {
                gate.Enter();
                gate.Exit();
                if (i % 2 == 0)
                {
                    Thread.Sleep(1);
                }
            }
            slowBiased = gate.IsBiasedToCurrentThread;
        })
        { IsBackground = true, Name = "slow" };
        slow.Start();
        Assert.True(slow.Join(TestTimeouts.Long));
        Assert.False(slowBiased);

        // Not biased to the slow thread, so the thread that uses it hard gets it, with no revocation.
        ThinLock biased = gate;
        for (int i = 0; i < ThinLock.BiasAfter; i++)
        {
            biased.Enter();
            biased.Exit();
        }
        Assert.True(biased.IsBiasedToCurrentThread);
        Assert.Equal(0, biased.Revocations);
    }

    /// <summary>
    /// The race the bias must survive: its owner entering and leaving by plain stores (scopes, re-entry) while other
    /// threads take the owner word, revoke, spin, park and try; each section does a non-atomic read-pause-write of a
    /// shared counter, so two threads inside at once lose an increment. Bursts of the owner alone let it earn the bias
    /// back between the others' raids.
    /// </summary>
    [BiasFact]
    public void Enter_BiasOwnerRacedByThreadsThatRevokeSpinParkAndTry_NoTwoThreadsAreEverInside()
    {
        var gate = new ThinLock();
        var probe = new ExclusionProbe(pause: 20);
        int stop = 0;
        int ownerBiasedEntries = 0;

        var owner = new Thread(() =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.ElapsedMilliseconds < 3000)
            {
                for (int i = 0; i < 3 * ThinLock.BiasAfter; i++)
                {
                    using (gate.EnterScope())
                    {
                        if (gate.IsBiasedToCurrentThread)
                        {
                            ownerBiasedEntries++;
                        }
                        probe.Section();
                        if ((i & 7) == 0)
                        {
                            gate.Enter();
                            probe.Section();
                            gate.Exit();
                        }
                    }
                    probe.Expect((i & 7) == 0 ? 2 : 1);
                }
            }
            Volatile.Write(ref stop, 1);
        })
        { IsBackground = true, Name = "bias-owner" };

        var raiders = new Thread[3];
        for (int r = 0; r < raiders.Length; r++)
        {
            int me = r;
            raiders[r] = new Thread(() =>
            {
                var random = new Random(me);
                while (Volatile.Read(ref stop) == 0)
                {
                    // Quiet spells, so the owner earns the bias back before the next raid; now and then one longer
                    // than the lock's 50 ms, after which a revocation no longer doubles what the owner must earn.
                    Thread.Sleep(random.Next(10) == 0 ? 60 : random.Next(0, 3));
                    int burst = random.Next(1, 20);
                    for (int i = 0; i < burst; i++)
                    {
                        if (me == 2)
                        {
                            if (gate.TryEnter())
                            {
                                probe.Section();
                                gate.Exit();
                                probe.Expect(1);
                            }
                        }
                        else
                        {
                            using (gate.EnterScope())
                            {
                                probe.Section();
                            }
                            probe.Expect(1);
                        }
                    }
                }
            })
            { IsBackground = true, Name = $"raider-{r}" };
        }

        owner.Start();
        foreach (Thread raider in raiders)
        {
            raider.Start();
        }
        Assert.True(owner.Join(TestTimeouts.Long));
        foreach (Thread raider in raiders)
        {
            Assert.True(raider.Join(TestTimeouts.Long));
        }

        probe.AssertExclusive();
        // Both paths were raced: the owner entered by its bias, and the raiders revoked it time and again.
        Assert.True(ownerBiasedEntries > 0, "the owner never held the bias");
        Assert.True(gate.Revocations > 1, $"only {gate.Revocations} revocations");
    }
}
