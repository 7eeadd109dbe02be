using System.Diagnostics;
using System.Globalization;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// A fuzzing peer (the TestHost's <c>fault-fuzz</c>) writes seeded random bytes into the victim's header and rings, case
/// after case. The victim is this process: after each case it reads whatever the ring holds, touching every payload
/// byte (a span outside its mapping would crash the test run), answers calls, and frees. It must either go on (and,
/// while nothing hostile happened yet, get the fuzzer's probe intact) or raise <see cref="ProtocolViolationException"/>
/// and close that connection; never another exception, never a hang.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Fault")]
public sealed class FaultFuzzTests(ITestOutputHelper output)
{
    private const int Cases = 10_000;
    private const int Seed = 7_2024;

    private static PageRangeOptions VictimOptions() => new()
    {
        RegionSize = PageRangeOptions.MinRegionSize,
        TransactionRingCapacity = 16,
        FreeRingCapacity = 16,
        // A reply into a region the fuzzer filled gives up quickly: the case must not wait.
        RegionFullTimeout = TimeSpan.FromMilliseconds(20),
    };

    [Fact]
    public async Task FuzzingPeer_RandomBytesInHeaderAndRings_VictimContinuesOrRaisesProtocolViolation()
    {
        FaultResources baseline = await FaultResources.SettledAsync();
        string name = ControlHandshakeTests.UniqueName();
        var clock = Stopwatch.StartNew();
        var byTarget = new SortedDictionary<string, (int Cases, int Violations)>(StringComparer.Ordinal);
        int cases = 0;
        int violations = 0;
        int intactCases = 0;
        int delivered = 0;
        int connections = 1;
        await using (PageRangeListener listener = PageRangeListener.Listen(name, VictimOptions()))
        using (TestHostProcess host = TestHostProcess.Start(null, "fault-fuzz", name, Seed.ToString(CultureInfo.InvariantCulture), Cases.ToString(CultureInfo.InvariantCulture)))
        {
            PageRangeConnection victim = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);
            host.WriteLine("ready");
            try
            {
                while (true)
                {
                    string line = host.ReadLine(TestTimeouts.Long);
                    if (line.StartsWith("done: ", StringComparison.Ordinal))
                    {
                        Assert.Equal(connections.ToString(CultureInfo.InvariantCulture), line["done: ".Length..]);
                        break;
                    }
                    // case <k> <target> intact|any keep|fresh
                    string[] words = line.Split(' ');
                    Assert.True(words.Length == 5 && words[0] == "case", $"unexpected line from the fuzzer: {line}");
                    int k = int.Parse(words[1], CultureInfo.InvariantCulture);
                    bool intact = words[3] == "intact";
                    bool fresh = words[4] == "fresh";

                    CaseOutcome outcome = RunCase(victim, k, Seed, waitForProbe: intact);
                    cases++;
                    delivered += outcome.Delivered;
                    (int targetCases, int targetViolations) = byTarget.GetValueOrDefault(words[2]);
                    byTarget[words[2]] = (targetCases + 1, targetViolations + (outcome.Violated ? 1 : 0));
                    if (outcome.Violated)
                    {
                        violations++;
                        Assert.False(victim.IsPeerAlive, $"case {k} (seed {Seed}): a protocol violation left the connection open");
                    }
                    if (intact)
                    {
                        intactCases++;
                        Assert.True(outcome.ProbeIntact && !outcome.Violated,
                            $"case {k} (seed {Seed}, {words[2]}): a harmless scribble cost the probe ({outcome})");
                    }

                    if (outcome.Violated || fresh || !victim.IsPeerAlive)
                    {
                        await victim.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
                        host.WriteLine("reconnect");
                        if (k + 1 < Cases)
                        {
                            victim = await listener.AcceptAsync().AsTask().WaitAsync(TestTimeouts.Long);
                            host.WriteLine("ready");
                            connections++;
                        }
                    }
                    else
                    {
                        host.WriteLine("next");
                    }
                }
            }
            finally
            {
                await victim.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Short);
            }
            Assert.Equal(0, host.WaitForExit());
        }

        output.WriteLine($"{cases} cases in {clock.Elapsed.TotalSeconds:F1} s over {connections} connections: {violations} protocol violations, " +
            $"{intactCases} harmless cases with the probe intact, {delivered} transactions delivered");
        foreach ((string target, (int targetCases, int targetViolations)) in byTarget)
        {
            output.WriteLine($"  {target}: {targetCases} cases, {targetViolations} violations");
        }
        Assert.Equal(Cases, cases);
        // Not vacuous: the fuzzer both breaks the protocol often and lets plenty through.
        Assert.InRange(violations, Cases / 20, Cases - (Cases / 5));
        Assert.True(intactCases > Cases / 10);

        // The victim process is whole: an honest connection works, and nothing leaked.
        await using (LoopbackPair pair = await LoopbackPair.OpenAsync())
        {
            pair.Client.SendOneway(1, new byte[100]);
            using Transaction transaction = pair.Server.Receive();
            Assert.Equal(100, transaction.Length);
        }
        FaultResources after = await FaultResources.SettledAsync();
        output.WriteLine($"before: {baseline}; after: {after}");
        Assert.Equal(baseline.Descriptors, after.Descriptors);
        Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
    }

    [Fact]
    public async Task PeerCorruptsFreeRingHead_VictimsFreeClosesTheConnection()
    {
        await using RawAttack attack = await RawAttack.StartAsync(VictimOptions());
        (RawPeer peer, PageRangeConnection victim) = attack;
        // The victim reads the peer's free-ring head only when its own view says the ring is full: after 16 frees (the
        // ring's capacity). So: 16 messages received and freed; a 17th sent (the peer drains the 16 frees first, writing
        // an honest head); then the head corrupted; then the 17th free must find the lie and close the connection.
        for (int i = 0; i < 16; i++)
        {
            // Larger than a pack's entry may be: a buffer and a free each, as counted here.
            Assert.True(peer.Outbound.TrySend((ulong)i + 1, 1, TransactionFlags.Oneway, new byte[PackLayout.MaxPayload + 8]));
            using var bound = new CancellationTokenSource(TestTimeouts.Short);
            victim.Receive(bound.Token).Dispose();
        }
        Assert.True(peer.Outbound.TrySend(17, 1, TransactionFlags.Oneway, new byte[PackLayout.MaxPayload + 8]));
        // A head far beyond the victim's tail: the writer's word, and a lie.
        peer.Scribble(RegionHeaderLayout.FreeHeadOffset, BitConverter.GetBytes(1UL << 40));
        using (var bound = new CancellationTokenSource(TestTimeouts.Short))
        {
            victim.Receive(bound.Token).Dispose();
        }

        Assert.False(victim.IsPeerAlive);
        Assert.Throws<ProtocolViolationException>(() => victim.SendOneway(1, new byte[8]));
    }

    /// <summary>
    /// Reads everything the ring holds now, touching every byte, answering calls and freeing. When the probe must be
    /// there, waits for it: the connection's background reader may be draining the ring at this moment (its periodic
    /// housekeeping), in which case what it routed is ready a moment later. Otherwise takes only what is ready; the
    /// rest is read with the next case.
    /// </summary>
    private static CaseOutcome RunCase(PageRangeConnection victim, int k, int seed, bool waitForProbe)
    {
        int delivered = 0;
        bool probeIntact = false;
        bool violated = false;
        using var bound = new CancellationTokenSource(TestTimeouts.Short);
        try
        {
            while (true)
            {
                Transaction transaction;
                if (waitForProbe && !probeIntact)
                {
                    try
                    {
                        transaction = victim.Receive(bound.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
                else if (!victim.TryReceive(out transaction))
                {
                    break;
                }
                using (transaction)
                {
                    delivered++;
                    // Reads the whole payload: a span outside the mapping would fault here.
                    if (FaultPayload.TryVerify(transaction.Payload, out ulong seq) && seq == (ulong)k)
                    {
                        probeIntact = true;
                    }
                    if (transaction.IsTwoWay)
                    {
                        try
                        {
                            transaction.Reply([1, 2, 3]);
                        }
                        catch (RegionFullException)
                        {
                            // The fuzzer's region is full of what it lied about; disposing sends an error reply or not.
                        }
                        catch (PeerDiedException)
                        {
                            // The fuzzer went away.
                        }
                    }
                }
            }
        }
        catch (ProtocolViolationException)
        {
            violated = true;
        }
        catch (Exception error)
        {
            throw new InvalidOperationException($"case {k} (seed {seed}): the victim failed with {error.GetType().Name}: {error.Message}", error);
        }
        return new CaseOutcome(delivered, probeIntact, violated);
    }

    private readonly record struct CaseOutcome(int Delivered, bool ProbeIntact, bool Violated);
}
