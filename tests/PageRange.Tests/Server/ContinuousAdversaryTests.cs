using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using PageRange.Server;
using PageRange.Testing;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// Issue 11's closing test: for half a minute hostile client processes mix every attack the suite knows, each killed
/// by SIGKILL at a random moment and replaced, while honest client processes of the same server keep calling.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ContinuousAdversaryTests(ITestOutputHelper output)
{
    private const int HonestClients = 4;
    private const int ConcurrentAttackers = 2;
    private static readonly TimeSpan s_attack = TimeSpan.FromSeconds(30);

    private static readonly string[] s_attacks =
        ["kill-mid-call", "garbage", "bad-frees", "silent", "fd-flood", "bad-hello", "cancel-flood", "region-full"];

    // The hello timeout is short enough that silent sockets are dropped during the run, long enough for a JIT on a busy
    // machine.
    private static PageRangeServerOptions Options() =>
        ServerTestOptions.ForClientProcesses(maxThreads: 4, helloTimeout: TimeSpan.FromSeconds(5), WaitStrategy.Park);

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task ThirtySeconds_EveryAttackAtRandom_HonestCallsAnsweredOrTyped_ServerServesAndLeaksNothing()
    {
        string name = ControlHandshakeTests.UniqueName();
        var service = new ServerLoadService();
        var disconnects = new ConcurrentQueue<ClientDisconnectedEventArgs>();
        var handshakeFailures = 0;
        PageRangeServer server = PageRangeServer.Start(name, Options(), service.Configure);
        server.ClientDisconnected += (_, e) => disconnects.Enqueue(e);
        server.HandshakeFailed += (_, _) => Interlocked.Increment(ref handshakeFailures);
        // After the server started: its listening socket belongs to the baseline; its clients' regions do not.
        FaultResources baseline = await FaultResources.SettledAsync();
        string descriptorsBefore = FaultResources.ListDescriptors();
        var honest = new List<TestHostProcess>();
        var attackers = new List<TestHostProcess>();
        var launched = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            for (int i = 0; i < HonestClients; i++)
            {
                honest.Add(TestHostProcess.Start(output, "adversary-honest", name,
                    s_attack.TotalSeconds.ToString(CultureInfo.InvariantCulture), (3000 + i).ToString(CultureInfo.InvariantCulture)));
            }
            Task<(long Answered, long Failed)[]> honestDone = Task.WhenAll(honest.Select(FinishHonestAsync));

            var random = new Random(11);
            string[] order = [.. s_attacks];
            random.Shuffle(order);
            var live = new List<(TestHostProcess Host, long KillAt)>();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < s_attack)
            {
                while (live.Count < ConcurrentAttackers)
                {
                    // Every kind once first (in a random order), then any kind at random.
                    string kind = attackers.Count < order.Length ? order[attackers.Count] : s_attacks[random.Next(s_attacks.Length)];
                    launched[kind] = launched.GetValueOrDefault(kind) + 1;
                    TestHostProcess attacker = TestHostProcess.Start(null, "adversary-attack", name, kind,
                        random.Next().ToString(CultureInfo.InvariantCulture));
                    attackers.Add(attacker);
                    // Killed at a random moment: during its handshake, mid-call, or long after the server dropped it.
                    live.Add((attacker, clock.ElapsedMilliseconds + random.Next(300, 4000)));
                }
                for (int i = live.Count - 1; i >= 0; i--)
                {
                    if (clock.ElapsedMilliseconds >= live[i].KillAt)
                    {
                        // Disposed with the others at the end (Dispose is not idempotent).
                        live[i].Host.Kill();
                        live.RemoveAt(i);
                    }
                }
                await Task.Delay(50).WaitAsync(TestTimeouts.Long);
            }
            foreach ((TestHostProcess host, _) in live)
            {
                host.Kill();
            }
            output.WriteLine($"attacks launched: {string.Join(", ", launched.Select(pair => $"{pair.Key}={pair.Value}"))}");
            Assert.Equal(s_attacks.Length, launched.Count);

            (long Answered, long Failed)[] results = await honestDone.WaitAsync(TimeSpan.FromMinutes(3));
            long answered = results.Sum(r => r.Answered);
            long failed = results.Sum(r => r.Failed);
            output.WriteLine($"honest calls: {answered} answered, {failed} failed with a typed error; " +
                $"{disconnects.Count} disconnects, {Volatile.Read(ref handshakeFailures)} failed handshakes");
            Assert.All(results, r => Assert.True(r.Answered > 0, "an honest client got no answer at all"));
            Assert.True(answered >= 20 * failed, $"{failed} of {answered + failed} honest calls failed");

            // The server is alive and serves a client that arrives after the storm.
            await using (PageRangeConnection late = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions()).AsTask().WaitAsync(TestTimeouts.Long))
            {
                byte[] request = new byte[5000];
                random.NextBytes(request);
                using Transaction reply = await late.CallAsync(ServerLoadPayload.EchoCode, request, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
                Assert.True(ServerLoadPayload.IsReplyTo(request, reply.Payload), "the late client's reply is not its request's");
            }
        }
        finally
        {
            foreach (TestHostProcess host in honest.Concat(attackers))
            {
                host.Dispose();
            }
        }

        try
        {
            // Every client is gone: the server's descriptors and region mappings come back to where they were.
            try
            {
                await PageRangeServerTests.WaitUntilAsync(() => server.ClientCount == 0);
            }
            catch (OperationCanceledException)
            {
                // Say which sessions never ended and what each was doing (receive loop, handlers, its peer's death).
                output.WriteLine($"sessions still alive: {server.DumpState()}");
                throw;
            }
            FaultResources after = await FaultResources.BackToAsync(baseline);
            output.WriteLine($"before: {baseline}; after: {after}");
            if (after.Descriptors != baseline.Descriptors)
            {
                output.WriteLine($"descriptors before: {descriptorsBefore}");
                output.WriteLine($"descriptors after: {FaultResources.ListDescriptors()}");
            }
            Assert.Equal(baseline.MemfdDescriptors, after.MemfdDescriptors);
            Assert.Equal(baseline.MemfdMappings, after.MemfdMappings);
            Assert.Equal(baseline.Descriptors, after.Descriptors);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Waits for an honest client's counts on a thread of its own (not the pool, which serves the server).</summary>
    private static Task<(long Answered, long Failed)> FinishHonestAsync(TestHostProcess host) =>
        Task.Factory.StartNew(() => FinishHonest(host), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static (long Answered, long Failed) FinishHonest(TestHostProcess host)
    {
        string done = host.ReadUntil("done: ", TimeSpan.FromMinutes(3));
        Assert.Equal(0, host.WaitForExit());
        long Field(string key) => long.Parse(
            done.Split(' ').Single(part => part.StartsWith(key + "=", StringComparison.Ordinal))[(key.Length + 1)..], CultureInfo.InvariantCulture);
        return (Field("answered"), Field("failed"));
    }
}
