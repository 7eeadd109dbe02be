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
        string name = $"reading-{Guid.NewGuid():N}"[..30];
        using var pair = new ChannelPair(ChannelPair.SmallOptions(), name);
        int mapped = Mappings(name);
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
        string name = $"role-{Guid.NewGuid():N}"[..30];
        using var pair = new ChannelPair(ChannelPair.SmallOptions(), name);
        int mapped = Mappings(name);
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
        string name = $"role-{Guid.NewGuid():N}"[..30];
        using var pair = new ChannelPair(ChannelPair.SmallOptions(), name);
        int mapped = Mappings(name);

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
    public void ReaderRole_TakenAndReleasedWhileAnotherThreadDisposes_TheRoleReferenceGivenBackExactlyOnce()
    {
        // Each round: a thread takes and releases the role in a loop, looking at the ring's tail whenever it finds the
        // ring open (a read of an unmapped page would end the process); this thread disposes the channel at a random
        // moment. A reading reference held across the race tells a double release (it would unmap under the reference)
        // from a missing one (the mapping would outlive the reference's exit).
        var random = new Random(4242);
        int heldAtDispose = 0;
        for (int round = 0; round < 200; round++)
        {
            string name = $"role-{Guid.NewGuid():N}"[..30];
            using var pair = new ChannelPair(ChannelPair.SmallOptions(), name);
            InboundChannel inbound = pair.Inbound;
            int mapped = Mappings(name);
            Assert.True(inbound.TryEnterReading());
            using var stop = new ManualResetEventSlim();
            int looks = 0;
            var reader = new Thread(() =>
            {
                while (!stop.IsSet)
                {
                    if (inbound.TryTakeReaderRole())
                    {
                        if (inbound.OpenToReaderRole && !inbound.TransactionMaybeReady)
                        {
                            looks++;
                        }
                        ReleaseRole(inbound);
                    }
                }
            })
            { IsBackground = true, Name = "role taker" };
            reader.Start();
            Thread.SpinWait(random.Next(0, 50_000));
            inbound.Dispose();
            if (inbound.ReaderRoleHeld)
            {
                heldAtDispose++;
            }
            stop.Set();
            Assert.True(reader.Join(TestTimeouts.Long), "the role taker stopped");

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

    /// <summary>The role's release as the connection makes it: the store, a full fence, the look at a dispose.</summary>
    private static void ReleaseRole(InboundChannel inbound)
    {
        inbound.ReleaseReaderRole();
        Interlocked.MemoryBarrier();
        inbound.AfterReaderRoleReleased();
    }

    private static int Mappings(string name) =>
        File.ReadLines("/proc/self/maps").Count(line => line.Contains(name, StringComparison.Ordinal));
}
