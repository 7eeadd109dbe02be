using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A reader's looks at the ring's tail and its waits read shared words outside the receive lock; a violation's close on
/// another thread may dispose the inbound channel meanwhile. The reader holds the reader role (which keeps the ring
/// mapped: <see cref="InboundChannel.TryTakeReaderRole"/>) or a reference on the region for its whole loop
/// (<see cref="InboundChannel.TryEnterReading"/>), so the dispose defers the unmap until the reader leaves and the look
/// sees the dispose instead of reading an unmapped page (a fault that would end the process).
/// </summary>
[Trait("Category", "Hostile")]
public sealed class InboundReadingReferenceTests(ITestOutputHelper output)
{
    [Fact]
    public void Dispose_WhileAReaderHoldsItsReference_UnmapsOnlyWhenTheReaderLeaves()
    {
        using ChannelPair pair = NewPair("reading", out string name, out int mapped);
        Assert.True(mapped > 0);

        Assert.True(pair.Inbound.TryEnterReading());
        pair.Inbound.Dispose();
        // Still mapped: the look reads the disposed flag, and even the tail behind it would be readable.
        Assert.Equal(mapped, Mappings(name));
        Assert.True(pair.Inbound.TransactionMaybeReady, "a disposed channel reads as ready, so the reader looks and sees the dispose");

        pair.Inbound.ExitReading();
        Assert.True(Mappings(name) < mapped, "the reader's exit is the last reference of the receiving side: it unmaps");
        Assert.False(pair.Inbound.TryEnterReading(), "a closed region gives no reference");
    }

    [Fact]
    public void Dispose_WhileAThreadHoldsTheReaderRole_UnmapsOnlyWhenTheRoleIsReleased()
    {
        using ChannelPair pair = NewPair("role", out string name, out int mapped);
        Assert.True(mapped > 0);

        Assert.True(pair.Inbound.TryTakeReaderRole());
        Assert.True(pair.Inbound.OpenToReaderRole);
        Assert.False(pair.Inbound.TryTakeReaderRole(), "one holder at a time");
        pair.Inbound.Dispose();
        // The role holds the ring mapped, with no reference of its own: its looks see the dispose, not an unmapped page.
        Assert.Equal(mapped, Mappings(name));
        Assert.True(pair.Inbound.TransactionMaybeReady, "a disposed channel reads as ready, so the holder looks and sees the dispose");

        ReleaseRole(pair.Inbound);
        Assert.True(Mappings(name) < mapped, "the role's release is the last reference of the receiving side: it unmaps");

        Assert.True(pair.Inbound.TryTakeReaderRole(), "the role is free again");
        Assert.False(pair.Inbound.OpenToReaderRole, "a holder after the dispose finds the ring closed and does not read it");
        ReleaseRole(pair.Inbound);
        Assert.False(pair.Inbound.TryEnterReading(), "a closed region gives no reference");
    }

    [Fact]
    public void Dispose_WithTheReaderRoleFree_UnmapsAtOnceAndTheNextHolderFindsItClosed()
    {
        using ChannelPair pair = NewPair("role", out string name, out int mapped);

        // A holder that came and went before the dispose leaves nothing behind.
        Assert.True(pair.Inbound.TryTakeReaderRole());
        ReleaseRole(pair.Inbound);
        Assert.Equal(mapped, Mappings(name));

        pair.Inbound.Dispose();
        Assert.True(Mappings(name) < mapped, "no holder: the dispose unmaps the receiving side at once");
        Assert.True(pair.Inbound.TryTakeReaderRole());
        Assert.False(pair.Inbound.OpenToReaderRole);
        ReleaseRole(pair.Inbound);
    }

    [Fact]
    public void Dispose_BetweenTheRoleHandoffAndThePreviousHoldersLook_KeepsTheNextHoldersRingMapped()
    {
        // From the review: H1 stores 0 (the first half of its release); H2 takes the role and finds the ring open; the
        // dispose sees H2 holding it and leaves the unmap to the role; only then does H1 look for a dispose.
        using ChannelPair pair = NewPair("handoff", out string name, out int mapped);
        InboundChannel inbound = pair.Inbound;

        Assert.True(inbound.TryTakeReaderRole());
        inbound.ReleaseReaderRole();
        Interlocked.MemoryBarrier();
        Assert.True(inbound.TryTakeReaderRole());
        Assert.True(inbound.OpenToReaderRole);
        inbound.Dispose();
        inbound.AfterReaderRoleReleased();

        Assert.True(Mappings(name) == mapped, "the second holder found the ring open: it stays mapped until that holder's release");
        Assert.True(inbound.TransactionMaybeReady, "the second holder's look sees the dispose");
        ReleaseRole(inbound);
        Assert.True(Mappings(name) < mapped, "the second holder's release unmaps");
    }

    [Fact]
    public void Dispose_WhileHeld_ThenTheRoleGoesToALateTakerBeforeTheReleasersLook_TheLateTakersReleaseUnmaps()
    {
        // From the second review: H1 holds the role (open); the dispose leaves the unmap to the role; H1 stores 0; H2 takes
        // the role (after the dispose: closed); H1's look sees the role held and leaves it to H2; H2's release unmaps.
        using ChannelPair pair = NewPair("late", out string name, out int mapped);
        InboundChannel inbound = pair.Inbound;

        Assert.True(inbound.TryTakeReaderRole());
        Assert.True(inbound.OpenToReaderRole);
        inbound.Dispose();
        Assert.Equal(mapped, Mappings(name));
        inbound.ReleaseReaderRole();
        Interlocked.MemoryBarrier();
        Assert.True(inbound.TryTakeReaderRole());
        Assert.False(inbound.OpenToReaderRole, "a taker after the dispose finds the ring closed");
        inbound.AfterReaderRoleReleased();
        Assert.False(inbound.ReaderRoleReferenceGivenBack, "the first holder leaves the reference to the holder it saw");
        Assert.Equal(mapped, Mappings(name));
        ReleaseRole(inbound);
        Assert.True(inbound.ReaderRoleReferenceGivenBack);
        Assert.True(Mappings(name) < mapped, "the late taker's release gives the role's reference back: nothing leaks");
    }

    [Fact]
    public void ReaderRole_TakenAndReleasedWhileAnotherThreadDisposes_TheRoleReferenceGivenBackExactlyOnce()
    {
        // Each round: two threads take and release the role in a loop (so it also changes hands), looking at the ring's
        // tail whenever they find the ring open (a read of an unmapped page would end the process); this thread disposes
        // the channel at a random moment. A holder that found the ring open checks, before it releases, that the role's
        // reference is still there (an early release would unmap under it). A reading reference held across the race
        // tells a double release (it would unmap under the reference) from a missing one (the mapping would outlive the
        // reference's exit).
        var random = new Random(4242);
        int heldAtDispose = 0;
        int early = 0;
        for (int round = 0; round < 200; round++)
        {
            using ChannelPair pair = NewPair("role", out string name, out int mapped);
            InboundChannel inbound = pair.Inbound;
            Assert.True(inbound.TryEnterReading());
            using var stop = new ManualResetEventSlim();
            int looks = 0;
            void TakeAndRelease()
            {
                while (!stop.IsSet)
                {
                    if (inbound.TryTakeReaderRole())
                    {
                        if (inbound.OpenToReaderRole)
                        {
                            if (!inbound.TransactionMaybeReady)
                            {
                                Interlocked.Increment(ref looks);
                            }
                            if (inbound.ReaderRoleReferenceGivenBack)
                            {
                                Interlocked.Increment(ref early);
                            }
                        }
                        ReleaseRole(inbound);
                    }
                }
            }
            Thread[] takers = [new(TakeAndRelease) { IsBackground = true, Name = "role taker 1" }, new(TakeAndRelease) { IsBackground = true, Name = "role taker 2" }];
            foreach (Thread taker in takers)
            {
                taker.Start();
            }
            Thread.SpinWait(random.Next(0, 50_000));
            inbound.Dispose();
            if (inbound.ReaderRoleHeld)
            {
                heldAtDispose++;
            }
            stop.Set();
            Assert.All(takers, taker => Assert.True(taker.Join(TestTimeouts.Long), "a role taker stopped"));

            Assert.Equal(0, Volatile.Read(ref early));
            Assert.Equal(mapped, Mappings(name));
            inbound.ExitReading();
            Assert.True(Mappings(name) < mapped, $"round {round}: the receiving side unmapped once every reference was given back ({looks} looks)");
        }
        output.WriteLine($"200 rounds; the role was held just after the dispose in {heldAtDispose}");
    }

    [Fact]
    public async Task Receive_ViolationClosesTheConnectionAtAnyMomentOfABusyReadersLoop_TypedErrorAndNothingLeftMapped()
    {
        // Busy-spin on purpose: its reader looks at the tail as often as it can, so the close lands inside the loop's
        // looks and waits as often as possible. Each round: a receiver blocked in Receive, a violation reported from
        // this thread after a random delay, the receiver's typed error, then nothing of the victim's regions mapped.
        var random = new Random(12345);
        int violations = 0;
        for (int round = 0; round < 30; round++)
        {
            PageRangeOptions options = ConnectionPair.DefaultOptions();
            options.WaitStrategy = WaitStrategy.BusySpin;
            string regionName;
            Exception error;
            await using (RawAttack attack = await RawAttack.StartAsync(options))
            {
                regionName = attack.RegionName;
                PageRangeConnection victim = attack.Victim;
                var result = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
                var thread = new Thread(() =>
                {
                    try
                    {
                        using var bound = new CancellationTokenSource(TestTimeouts.Long);
                        using Transaction unexpected = victim.Receive(bound.Token);
                        result.SetResult(new InvalidOperationException($"Receive returned transaction {unexpected.Id}."));
                    }
#pragma warning disable CA1031 // Whatever Receive throws is the test's answer.
                    catch (Exception thrown)
#pragma warning restore CA1031
                    {
                        result.SetResult(thrown);
                    }
                })
                { IsBackground = true, Name = "busy receiver" };
                thread.Start();
                Thread.SpinWait(random.Next(0, 200_000));
                victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport"));
                error = await result.Task.WaitAsync(TestTimeouts.Long);
            }
            Assert.IsType<ProtocolViolationException>(error);
            violations++;
            await Poll.WaitUntilAsync(() => Mappings(regionName) == 0, "the victim's and attacker's regions unmapped");
        }
        output.WriteLine($"{violations} rounds, each a ProtocolViolationException and no mapping left");
    }

    [Fact]
    public async Task ReceiveAndTryReceive_RolePassedAmongThreeThreadsWhenAViolationCloses_EachEndsWithATypedErrorAndNothingLeftMapped()
    {
        // From the review: the role changing hands while the channel is disposed. Busy-spin; one thread waits in Receive
        // (cancelled every few hundred microseconds, so it takes the role again and again), two call TryReceive in a loop
        // (each call takes the role for a pass when nothing is ready); a violation closes the connection at a random moment.
        var random = new Random(777);
        var seen = new Dictionary<string, int>();
        for (int round = 0; round < 20; round++)
        {
            PageRangeOptions options = ConnectionPair.DefaultOptions();
            options.WaitStrategy = WaitStrategy.BusySpin;
            string regionName;
            var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
            await using (RawAttack attack = await RawAttack.StartAsync(options))
            {
                regionName = attack.RegionName;
                PageRangeConnection victim = attack.Victim;
                using var bound = new CancellationTokenSource(TestTimeouts.Long);
                var waiter = new Thread(() =>
                {
                    try
                    {
                        while (!bound.IsCancellationRequested)
                        {
                            using var shortWait = CancellationTokenSource.CreateLinkedTokenSource(bound.Token);
                            shortWait.CancelAfter(TimeSpan.FromMilliseconds(0.3));
                            try
                            {
                                using Transaction unexpected = victim.Receive(shortWait.Token);
                                errors.Enqueue(new InvalidOperationException($"Receive returned transaction {unexpected.Id}."));
                                return;
                            }
                            catch (OperationCanceledException) when (!bound.IsCancellationRequested)
                            {
                                // Again: the role is taken anew.
                            }
                        }
                        errors.Enqueue(new TimeoutException("the waiter never saw the violation"));
                    }
#pragma warning disable CA1031 // Whatever Receive throws is the test's answer.
                    catch (Exception thrown)
#pragma warning restore CA1031
                    {
                        errors.Enqueue(thrown);
                    }
                })
                { IsBackground = true, Name = "receiver" };
                Thread[] pollers = [.. Enumerable.Range(0, 2).Select(i => new Thread(() =>
                {
                    try
                    {
                        while (!bound.IsCancellationRequested)
                        {
                            if (victim.TryReceive(out Transaction unexpected))
                            {
                                unexpected.Dispose();
                                errors.Enqueue(new InvalidOperationException("TryReceive returned a transaction."));
                                return;
                            }
                        }
                        errors.Enqueue(new TimeoutException("a poller never saw the violation"));
                    }
#pragma warning disable CA1031 // Whatever TryReceive throws is the test's answer.
                    catch (Exception thrown)
#pragma warning restore CA1031
                    {
                        errors.Enqueue(thrown);
                    }
                })
                { IsBackground = true, Name = $"poller {i}" })];
                waiter.Start();
                foreach (Thread poller in pollers)
                {
                    poller.Start();
                }
                Thread.SpinWait(random.Next(0, 400_000));
                victim.ClosePeerViolation(new ProtocolViolationException("a malformed frame above the transport"));
                Assert.True(waiter.Join(TestTimeouts.Long), "the receiver ended");
                Assert.All(pollers, poller => Assert.True(poller.Join(TestTimeouts.Long), "a poller ended"));
            }
            Assert.Equal(3, errors.Count);
            // Each learns the end as a typed error: the violation itself, or the connection's end after it.
            Assert.All(errors, error => Assert.True(error is PageRangeException or ObjectDisposedException, $"round {round}: {error}"));
            foreach (Exception error in errors)
            {
                seen[error.GetType().Name] = seen.GetValueOrDefault(error.GetType().Name) + 1;
            }
            await Poll.WaitUntilAsync(() => Mappings(regionName) == 0, "the victim's and attacker's regions unmapped");
        }
        output.WriteLine($"20 rounds; the threads' errors: {string.Join(", ", seen.Select(pair => $"{pair.Key} {pair.Value}"))}");
    }

    /// <summary>A channel pair over a region named for this test alone, and how many mappings of that name there are.</summary>
    private static ChannelPair NewPair(string prefix, out string name, out int mapped)
    {
        name = $"{prefix}-{Guid.NewGuid():N}"[..30];
        var pair = new ChannelPair(ChannelPair.SmallOptions(), name);
        mapped = Mappings(name);
        return pair;
    }

    /// <summary>The role's release as the connection makes it: the store, a fence where one is needed, the look at a dispose.</summary>
    private static void ReleaseRole(InboundChannel inbound)
    {
        // As the connection releases it: a plain store, with a fence only where Dispose's process-wide barrier does not
        // stand in for one (on x64 these tests race Dispose against the fence-free release).
        inbound.ReleaseReaderRole();
        if (InboundChannel.RoleReleaseNeedsFence)
        {
            Interlocked.MemoryBarrier();
        }
        inbound.AfterReaderRoleReleased();
    }

    private static int Mappings(string name) =>
        File.ReadLines("/proc/self/maps").Count(line => line.Contains(name, StringComparison.Ordinal));
}
