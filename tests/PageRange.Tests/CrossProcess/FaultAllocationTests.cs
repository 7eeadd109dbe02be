using System.Collections.Concurrent;
using PageRange.Memory;
using PageRange.Testing;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Backing pages that cannot be allocated (the memory layer's fault seam, as if fallocate said ENOSPC) while traffic
/// flows both ways: the failing send gets a typed error, nothing that was acknowledged is lost or damaged, and the
/// connection carries on.
/// </summary>
/// <remarks>In the cross-process collection because it drives the process-wide shrinker, which other tests' ranges share.</remarks>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Fault")]
public sealed class FaultAllocationTests(ITestOutputHelper output)
{
    private const int Senders = 2;
    private const int MessagesPerSender = 300;
    private const uint EndCode = 99;

    [Fact]
    public async Task BackingAllocationFails_UnderTraffic_TypedErrorAndNothingCorruptedOrLost()
    {
        var serverOptions = new PageRangeOptions { RegionSize = 1L << 20 };
        var clientOptions = new PageRangeOptions { CallTimeout = TestTimeouts.Long };
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(serverOptions, clientOptions);
        int failing = 1;
        var injectorRandom = new Random(4242);
        // Called under the range's mm lock, one page at a time, so the Random is never used concurrently.
        pair.Client.Outbound.Region.AllocationFaultInjector = _ => Volatile.Read(ref failing) == 1 && injectorRandom.Next(4) == 0;

        var received = new ConcurrentDictionary<ulong, int>();
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        Task server = Task.Factory.StartNew(() => Serve(pair.Server, received, bound.Token), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task shrinking = Task.Run(async () =>
        {
            // Pages freed by the server go back to the kernel all the time, so sends keep needing new backing.
            while (Volatile.Read(ref failing) == 1)
            {
                Shrinker.Shared.Scan(long.MaxValue);
                await Task.Delay(2);
            }
        });

        var sent = new ConcurrentDictionary<ulong, int>();
        int failures = 0;
        Task[] senders = Enumerable.Range(1, Senders).Select(sender => Task.Factory.StartNew(() =>
        {
            var random = new Random(sender);
            byte[] buffer = new byte[256 << 10];
            for (int n = 1; n <= MessagesPerSender; n++)
            {
                ulong seq = ((ulong)sender << 32) | (uint)n;
                int length = random.Next(FaultPayload.MinLength, n % 5 == 0 ? buffer.Length : 4096);
                Span<byte> payload = buffer.AsSpan(0, length);
                FaultPayload.Fill(payload, seq);
                try
                {
                    if (random.Next(3) == 0)
                    {
                        using Transaction reply = pair.Client.Call(1, payload);
                        Assert.True(FaultPayload.TryVerify(reply.Payload, out ulong echoed));
                        Assert.Equal(seq, echoed);
                    }
                    else
                    {
                        pair.Client.SendOneway(1, payload);
                    }
                    Assert.True(sent.TryAdd(seq, length));
                }
                catch (BackingAllocationException)
                {
                    Interlocked.Increment(ref failures);
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
        await Task.WhenAll(senders).WaitAsync(TestTimeouts.Long);
        Volatile.Write(ref failing, 0);
        await shrinking.WaitAsync(TestTimeouts.Long);
        for (int sender = 1; sender <= Senders; sender++)
        {
            pair.Client.SendOneway(EndCode, new byte[8]);
        }
        await server.WaitAsync(TestTimeouts.Long);

        output.WriteLine($"{sent.Count} sent, {failures} failed with BackingAllocationException, {received.Count} received");
        Assert.InRange(failures, 5, (Senders * MessagesPerSender) / 2);
        Assert.Equal(Senders * MessagesPerSender, sent.Count + failures);
        // Exactly what was acknowledged arrived, each once, whole.
        Assert.Equal(sent.OrderBy(p => p.Key), received.OrderBy(p => p.Key));

        // The writer's bookkeeping is whole: once the server's frees are drained, nothing is live or Used.
        await FaultKillTests.WaitUntilAsync(() => pair.Client.DumpState().Contains("live buffers: 0 ", StringComparison.Ordinal));
        string dump = pair.Client.DumpState();
        Assert.Matches(@"outbound [^\n]*\n(.*\n)*?  pages: 0:\d+:\d+", dump);
        Assert.Contains("buffers: 0\n", dump, StringComparison.Ordinal);
        // And the connection still works both ways.
        Task echo = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive(bound.Token);
            call.Reply(call.Payload);
        });
        using (Transaction reply = pair.Client.Call(2, new byte[3000]))
        {
            Assert.Equal(3000, reply.Length);
        }
        await echo.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task ReplyCannotBeBacked_CallerGetsAnErrorReplyInsteadOfWaitingForever()
    {
        var clientOptions = new PageRangeOptions { CallTimeout = TimeSpan.FromSeconds(10) };
        await using LoopbackPair pair = await LoopbackPair.OpenAsync(clientOptions: clientOptions);
        pair.Server.Outbound.Region.AllocationFaultInjector = _ => true;
        Task serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            Assert.Throws<BackingAllocationException>(() => call.Reply(new byte[3 * SharedRegion.PageSize]));
            // Disposing the call unanswered must still tell the caller (binder's BR_FAILED_REPLY). A short error reply
            // goes inline in the ring and needs no page; one that did not would need its page backed, so let it be.
            pair.Server.Outbound.Region.AllocationFaultInjector = null;
        });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Throws<RemoteCallException>(() => pair.Client.Call(1, new byte[8]).Dispose());
        output.WriteLine($"error reply after {clock.ElapsedMilliseconds} ms");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        await serving.WaitAsync(TestTimeouts.Long);
    }

    private static void Serve(PageRangeConnection server, ConcurrentDictionary<ulong, int> received, CancellationToken cancellationToken)
    {
        int ends = 0;
        while (ends < Senders)
        {
            using Transaction transaction = server.Receive(cancellationToken);
            if (transaction.Code == EndCode)
            {
                ends++;
                continue;
            }
            Assert.True(FaultPayload.TryVerify(transaction.Payload, out ulong seq), $"a corrupt transaction of {transaction.Length} bytes");
            Assert.True(received.TryAdd(seq, transaction.Length), $"seq {seq:x} delivered twice");
            if (transaction.IsTwoWay)
            {
                transaction.Reply(transaction.Payload);
            }
        }
    }
}
