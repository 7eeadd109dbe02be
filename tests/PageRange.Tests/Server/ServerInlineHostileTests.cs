using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// A hostile client holds its session's receiving thread: it warms a handler up until the handler runs inline
/// (<see cref="PageRangeServerOptions.RunFastHandlersInline"/>), makes a call whose handler calls it back, never answers
/// that callback, and floods the server with calls and oneway messages. The server's watch rescues the held session
/// (another receiver hands the flood to the workers), the other clients go on being served, and the hostile client's
/// end, or the server's stop, releases the held handler and everything the client cost.
/// </summary>
/// <remarks>
/// The clients are connections of this process, as in <see cref="ServerInlineTests"/>; the class still joins the
/// cross-process collection, so that the descriptor counts see no other test's connections (and
/// <see cref="FaultResources"/> starts a TestHost to warm up). The connections keep the default
/// <see cref="PageRangeOptions.RegionFullTimeout"/> (5 s): a flood the server stopped taking would fail with a
/// <see cref="RegionFullException"/>, which the first test would report.
/// </remarks>
[Collection(CrossProcessCollection.Name)]
public sealed class ServerInlineHostileTests(ITestOutputHelper output)
{
    private const uint Echo = 1;
    private const uint Note = 2;
    private const uint Work = 3;
    // The code of the server's call back into the hostile client (which never receives it).
    private const uint CallBack = 4;
    private const byte Fast = 0;
    private const byte CallClientBack = 1;

    private const int HonestClients = 3;
    private const int HonestCallsPerLoop = 150;
    // Two loops per honest client: calls sent at once go to the workers the flood uses, not only inline.
    private const int HonestLoopsPerClient = 2;
    private const int FloodCallers = 4;
    // The flood goes on until the honest clients are done, and at least this many calls and this long.
    private const int MinFloodCalls = 2000;
    private static readonly TimeSpan s_minFlood = TimeSpan.FromSeconds(3);

    private const string SessionThread = "PageRange session";

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task HeldInlineByUnansweredCallback_ClientFloods_HonestClientsAnswered_EveryFloodCallAnsweredAndOnewayHandledInOrder()
    {
        await using var scenario = await Scenario.StartAsync(output);
        await scenario.HoldInlineAsync();

        using var stopFlood = new CancellationTokenSource();
        var floodClock = Stopwatch.StartNew();
        Task<Flood> flood = scenario.FloodAsync(stopFlood.Token);
        Task<int> honest = scenario.RunHonestCallsAsync();
        try
        {
            Assert.Equal(HonestClients * HonestLoopsPerClient * HonestCallsPerLoop, await honest.WaitAsync(TestTimeouts.Long));
            Assert.True(await UntilAsync(() => (scenario.FloodAnswered >= MinFloodCalls && floodClock.Elapsed >= s_minFlood) || flood.IsCompleted),
                $"{scenario.FloodAnswered} flood calls answered in {TestTimeouts.Long}: the held session's calls were not received");
        }
        finally
        {
            await stopFlood.CancelAsync();
        }
        Flood result = await flood.WaitAsync(TestTimeouts.Long);
        output.WriteLine($"flood: {result.Answered} calls answered, {result.OnewaysSent} oneways sent, {result.Errors.Count} errors; " +
            $"{scenario.Server.InlineRescues} rescues; honest: {await honest} calls answered");

        // The flood is served, not refused: the rescue received every call and oneway of the held session.
        Assert.True(result.Errors.IsEmpty, $"the flood failed: {string.Join("; ", result.Errors.Select(static e => $"{e.GetType().Name}: {e.Message}"))}");
        Assert.True(result.Answered >= MinFloodCalls, $"only {result.Answered} flood calls answered");
        Assert.True(await UntilAsync(() => scenario.NotesHandled == result.OnewaysSent),
            $"{scenario.NotesHandled} of the {result.OnewaysSent} oneways sent were handled");
        Assert.Equal(0, scenario.NotesOutOfOrder);
        // The hostile client was neither closed nor refused, and its handler is still held on the session's thread.
        Assert.False(scenario.Disconnects.Reader.TryPeek(out ClientDisconnectedEventArgs? disconnected), $"a client was disconnected: {disconnected}");
        Assert.Equal(HonestClients + 1, scenario.Server.ClientCount);
        Assert.False(scenario.HeldEndings.Reader.TryPeek(out HeldEnding early), $"the held handler ended while its client was alive: {early.Error}");
        string dump = scenario.Server.DumpState();
        Assert.Contains("a handler inline for", dump, StringComparison.Ordinal);
        Assert.Contains("(rescued)", dump, StringComparison.Ordinal);
        Assert.Empty(scenario.CallFailures);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task HeldInlineByUnansweredCallback_ClientGoneMidFlood_HeldHandlerReleased_OnlyHonestSessionsLeft_NothingLeaks_StopReturns()
    {
        FaultResources beforeServer = await FaultResources.SettledAsync();
        await using var scenario = await Scenario.StartAsync(output);
        // The honest clients are connected: what the hostile client costs comes on top of this.
        FaultResources beforeHostile = await FaultResources.SettledAsync();
        await scenario.ConnectHostileAsync();
        long hostileId = scenario.HostileId;
        await scenario.HoldInlineAsync();

        using var stopFlood = new CancellationTokenSource();
        var floodClock = Stopwatch.StartNew();
        Task<Flood> flood = scenario.FloodAsync(stopFlood.Token);
        Task<int> honest = scenario.RunHonestCallsAsync();
        Assert.True(await UntilAsync(() => scenario.FloodAnswered >= MinFloodCalls / 4 && floodClock.Elapsed >= s_minFlood / 3),
            $"{scenario.FloodAnswered} flood calls answered in {TestTimeouts.Long}: the held session's calls were not received");

        // Gone in the middle of its flood: its calls in flight, the callback still unanswered.
        await scenario.Hostile.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        await stopFlood.CancelAsync();
        Flood result = await flood.WaitAsync(TestTimeouts.Long);
        output.WriteLine($"flood before the end: {result.Answered} calls answered, {result.OnewaysSent} oneways sent; " +
            $"the flood's errors: {string.Join(", ", result.Errors.Select(static e => e.GetType().Name).Distinct())}");

        // The held handler is released: its callback fails with the client's death, or its token fires first because
        // the caller is gone (whichever the server notices first; the server is not stopping).
        HeldEnding ending = await scenario.NextHeldEndingAsync();
        output.WriteLine($"the held callback ended with {ending.Error?.GetType().Name ?? "an answer"}; its token {(ending.TokenCancelled ? "cancelled" : "not cancelled")}");
        Assert.NotNull(ending.Error);
        if (ending.Error is not PeerDiedException)
        {
            OperationCanceledException cancelled = Assert.IsType<OperationCanceledException>(ending.Error);
            Assert.True(ending.TokenCancelled, "the callback was cancelled, but not by the handler's token");
            Assert.Equal(ending.Token, cancelled.CancellationToken);
        }
        ClientDisconnectedEventArgs gone = await scenario.Disconnects.Reader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(hostileId, gone.Client.Id);
        Assert.Equal(ClientDisconnectReason.PeerClosed, gone.Reason);

        // The honest clients were served throughout, and theirs are the only sessions left.
        Assert.Equal(HonestClients * HonestLoopsPerClient * HonestCallsPerLoop, await honest.WaitAsync(TestTimeouts.Long));
        Assert.True(await UntilAsync(() => scenario.Server.ClientCount == HonestClients),
            $"{scenario.Server.ClientCount} sessions left, not the {HonestClients} honest ones: {scenario.Server.DumpState()}");
        Assert.Equal(scenario.HonestIds, scenario.Server.Clients.Select(static client => client.Id).Order());
        Assert.True(await UntilAsync(() => scenario.Server.InFlightCalls == 0),
            $"{scenario.Server.InFlightCalls} calls still in flight: {scenario.Server.DumpState()}");
        string dump = scenario.Server.DumpState();
        Assert.DoesNotContain("a handler inline for", dump, StringComparison.Ordinal);
        Assert.DoesNotContain($"client {hostileId}:", dump, StringComparison.Ordinal);
        // The held handler's failure was the client's end, not a failure of the server's (no Internal reply, no event).
        Assert.Empty(scenario.CallFailures);

        // The server, still serving the honest clients, gave back what the hostile one cost.
        FaultResources afterHostile = await FaultResources.BackToAsync(beforeHostile);
        output.WriteLine($"before the hostile client: {beforeHostile}; after: {afterHostile}");
        Assert.Equal(beforeHostile.MemfdDescriptors, afterHostile.MemfdDescriptors);
        Assert.Equal(beforeHostile.MemfdMappings, afterHostile.MemfdMappings);
        Assert.Equal(beforeHostile.Descriptors, afterHostile.Descriptors);

        await scenario.Server.StopAsync().WaitAsync(TestTimeouts.Long);
        await scenario.DisposeAsync();
        FaultResources afterServer = await FaultResources.BackToAsync(beforeServer);
        output.WriteLine($"before the server: {beforeServer}; after: {afterServer}");
        Assert.Equal(beforeServer.MemfdDescriptors, afterServer.MemfdDescriptors);
        Assert.Equal(beforeServer.MemfdMappings, afterServer.MemfdMappings);
        Assert.Equal(beforeServer.Descriptors, afterServer.Descriptors);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task StopAsync_WhileHeldInlineAndFlooded_ReturnsAfterItsGrace_HeldCallbackCancelled_EveryClientToldTheServerStops()
    {
        await using var scenario = await Scenario.StartAsync(output);
        await scenario.HoldInlineAsync();
        using var stopFlood = new CancellationTokenSource();
        Task<Flood> flood = scenario.FloodAsync(stopFlood.Token);
        Assert.True(await UntilAsync(() => scenario.FloodAnswered >= MinFloodCalls / 4 || flood.IsCompleted),
            $"{scenario.FloodAnswered} flood calls answered in {TestTimeouts.Long}: the held session's calls were not received");

        // A short grace: the held handler waits for a callback nobody answers, so only the grace's end releases it.
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await scenario.Server.StopAsync(grace.Token).WaitAsync(TestTimeouts.Long);
        await stopFlood.CancelAsync();
        Flood result = await flood.WaitAsync(TestTimeouts.Long);
        output.WriteLine($"flood: {result.Answered} calls answered, {result.OnewaysSent} oneways sent; errors: " +
            string.Join("; ", result.Errors.Select(static e => $"{e.GetType().Name}: {e.Message}")));

        // The grace's end cancelled the held handler's token, which its callback waits with.
        HeldEnding ending = await scenario.NextHeldEndingAsync();
        OperationCanceledException cancelled = Assert.IsType<OperationCanceledException>(ending.Error);
        Assert.True(ending.TokenCancelled, "the callback was cancelled, but not by the handler's token");
        Assert.Equal(ending.Token, cancelled.CancellationToken);
        // So its caller is told the call was cancelled by the stop.
        RemoteCallException heldReply = await Assert.ThrowsAsync<RemoteCallException>(() => scenario.HeldCall.WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.Cancelled, heldReply.Status);

        // Every client, the hostile one too, was closed as the server stopped.
        Assert.Equal(0, scenario.Server.ClientCount);
        var disconnects = new List<ClientDisconnectedEventArgs>();
        while (scenario.Disconnects.Reader.TryRead(out ClientDisconnectedEventArgs? e))
        {
            output.WriteLine(e.ToString());
            disconnects.Add(e);
        }
        Assert.Equal(HonestClients + 1, disconnects.Count);
        Assert.All(disconnects, static e => Assert.Equal(ClientDisconnectReason.ServerStopping, e.Reason));
        // The flood ended with the stop, and only the ways a stop answers: a call received while stopping is refused as
        // Unavailable; one still unread, and every later send, finds the connection closed with the stop's reason.
        Assert.Empty(scenario.CallFailures);
        Assert.InRange(result.Errors.Count, 0, FloodCallers + 1);
        Assert.All(result.Errors, static error =>
        {
            if (error is RemoteCallException refused)
            {
                Assert.Equal(CallStatus.Unavailable, refused.Status);
                return;
            }
            Assert.Equal("the server is shutting down", Assert.IsType<PeerDiedException>(error).PeerReason);
        });
    }

    /// <summary>Whether <paramref name="condition"/> came true within <see cref="TestTimeouts.Long"/>.</summary>
    private static async Task<bool> UntilAsync(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TestTimeouts.Long)
            {
                return false;
            }
            await Task.Delay(10);
        }
        return true;
    }

    /// <summary>How a held run (a call back into the hostile client) ended: <see cref="Error"/> null if answered.</summary>
    private readonly record struct HeldEnding(Exception? Error, bool TokenCancelled, CancellationToken Token);

    /// <summary>What the hostile client's flood got: calls answered, oneways sent, and what failed.</summary>
    private sealed record Flood(long Answered, long OnewaysSent, ConcurrentQueue<Exception> Errors);

    /// <summary>
    /// One server (four workers, handlers inline when fast), <see cref="HonestClients"/> honest clients and, once
    /// connected, the hostile one; the handlers record on which thread the held run started and how it ended.
    /// </summary>
    private sealed class Scenario : IAsyncDisposable
    {
        private readonly ITestOutputHelper _output;
        private readonly ConcurrentQueue<string> _echoThreads = new();
        private readonly Channel<string> _heldStarts = Channel.CreateUnbounded<string>();
        private readonly List<PageRangeConnection> _honest = [];
        private readonly List<long> _honestIds = [];
        // The hostile client's calls whose handlers call it back: each fails when it goes (observed at the end).
        private readonly List<Task<Transaction>> _heldCalls = [];
        private PageRangeConnection? _hostile;
        private long _floodAnswered;
        private long _notesHandled;
        private long _notesOutOfOrder;
        private bool _disposed;

        private Scenario(ITestOutputHelper output, string name)
        {
            _output = output;
            Name = name;
        }

        internal string Name { get; }

        internal PageRangeServer Server { get; private set; } = null!;

        internal PageRangeConnection Hostile => _hostile ?? throw new InvalidOperationException("The hostile client is not connected.");

        internal long HostileId { get; private set; }

        /// <summary>The hostile client's call whose handler is held (the last one made).</summary>
        internal Task<Transaction> HeldCall { get; private set; } = Task.FromException<Transaction>(new InvalidOperationException("No call is held."));

        internal IReadOnlyList<long> HonestIds => _honestIds;

        /// <summary>How each held run ended, in order.</summary>
        internal Channel<HeldEnding> HeldEndings { get; } = Channel.CreateUnbounded<HeldEnding>();

        internal Channel<ClientDisconnectedEventArgs> Disconnects { get; } = Channel.CreateUnbounded<ClientDisconnectedEventArgs>();

        /// <summary>Handler failures the server reported as its own (<see cref="CallStatus.Internal"/>): none is expected.</summary>
        internal ConcurrentQueue<CallFailedEventArgs> CallFailures { get; } = new();

        internal long FloodAnswered => Interlocked.Read(ref _floodAnswered);

        internal long NotesHandled => Interlocked.Read(ref _notesHandled);

        internal long NotesOutOfOrder => Interlocked.Read(ref _notesOutOfOrder);

        internal static async Task<Scenario> StartAsync(ITestOutputHelper output)
        {
            var scenario = new Scenario(output, ControlHandshakeTests.UniqueName());
            scenario.Server = PageRangeServer.Start(scenario.Name, ServerTestOptions.InProcess(4), scenario.Configure);
            scenario.Server.ClientDisconnected += (_, e) => scenario.Disconnects.Writer.TryWrite(e);
            scenario.Server.CallFailed += (_, e) => scenario.CallFailures.Enqueue(e);
            for (int i = 0; i < HonestClients; i++)
            {
                scenario._honest.Add(await ServerTestOptions.ConnectAsync(scenario.Name));
            }
            await PageRangeServerTests.WaitUntilAsync(() => scenario.Server.ClientCount == HonestClients);
            scenario._honestIds.AddRange(scenario.Server.Clients.Select(static client => client.Id).Order());
            return scenario;
        }

        internal async Task ConnectHostileAsync()
        {
            _hostile = await ServerTestOptions.ConnectAsync(Name);
            await PageRangeServerTests.WaitUntilAsync(() => Server.ClientCount == HonestClients + 1);
            HostileId = Server.Clients.Select(static client => client.Id).Except(_honestIds).Single();
        }

        private void Configure(PageRangeServerBuilder builder) => builder
            .Map(Echo, (tx, ctx) =>
            {
                string thread = Thread.CurrentThread.Name ?? "";
                if (tx.Payload[0] != CallClientBack)
                {
                    _echoThreads.Enqueue(thread);
                    tx.Reply(tx.Payload);
                    return;
                }
                _heldStarts.Writer.TryWrite(thread);
                // The token the callback waits with (the caller's cancel or end, the server's stop).
                CancellationToken token = ctx.CancellationToken;
                try
                {
                    // No timeout: the callback waits for the client's answer or its end, as binder's would.
                    using Transaction answer = ctx.Call(CallBack, [CallClientBack]);
                    HeldEndings.Writer.TryWrite(new HeldEnding(null, token.IsCancellationRequested, token));
                    tx.Reply(answer.Payload);
                }
                catch (Exception error)
                {
                    HeldEndings.Writer.TryWrite(new HeldEnding(error, token.IsCancellationRequested, token));
                    throw;
                }
            })
            .Map(Note, (tx, _) =>
            {
                long sequence = BinaryPrimitives.ReadInt64LittleEndian(tx.Payload);
                // One at a time (binder's oneway rule), so a plain read-then-write is enough; the count publishes it.
                if (sequence != Interlocked.Read(ref _notesHandled) + 1)
                {
                    Interlocked.Increment(ref _notesOutOfOrder);
                }
                Interlocked.Increment(ref _notesHandled);
            })
            .Map(Work, (tx, _) => tx.Reply(tx.Payload));

        /// <summary>
        /// Warms <see cref="Echo"/> up until it runs inline, then makes the call whose handler calls the hostile client
        /// back, until that handler is held on the session's thread (a run a preemption sent to a worker is answered
        /// and tried again), and waits for the watch's rescue.
        /// </summary>
        internal async Task HoldInlineAsync()
        {
            if (_hostile is null)
            {
                await ConnectHostileAsync();
            }
            for (int attempt = 0; attempt < 5; attempt++)
            {
                await WarmUpUntilInlineAsync();
                // Not awaited: its handler waits for a callback this client never answers.
                HeldCall = Hostile.CallAsync(Echo, new byte[] { CallClientBack }).AsTask();
                _heldCalls.Add(HeldCall);
                string thread = await _heldStarts.Reader.ReadAsync().AsTask().WaitAsync(TestTimeouts.Long);
                if (thread.StartsWith(SessionThread, StringComparison.Ordinal))
                {
                    Assert.True(SpinWait.SpinUntil(() => Server.DumpState().Contains("(rescued)", StringComparison.Ordinal), TestTimeouts.Long),
                        "the held session was never rescued");
                    return;
                }
                // Held on a worker: answer the callback, so that run ends, and try again.
                _output.WriteLine($"attempt {attempt}: the held run started on '{thread}', not inline");
                using (Transaction callBack = await Hostile.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
                {
                    callBack.Reply(callBack.Payload);
                }
                Assert.Null((await NextHeldEndingAsync()).Error);
            }
            Assert.Fail("the call back into the client never ran on the session's thread in 5 attempts");
        }

        internal async Task<HeldEnding> NextHeldEndingAsync()
        {
            Assert.True(await UntilAsync(() => HeldEndings.Reader.TryPeek(out _)), $"the held handler was not released within {TestTimeouts.Long}");
            Assert.True(HeldEndings.Reader.TryRead(out HeldEnding ending));
            return ending;
        }

        /// <summary>Fast calls until <see cref="Echo"/> ran inline twice in a row.</summary>
        private async Task WarmUpUntilInlineAsync()
        {
            _echoThreads.Clear();
            for (int i = 0; i < 2000; i++)
            {
                string[] last = [.. _echoThreads.TakeLast(2)];
                if (last.Length == 2 && last.All(static thread => thread.StartsWith(SessionThread, StringComparison.Ordinal)))
                {
                    return;
                }
                using Transaction reply = await Hostile.CallAsync(Echo, new byte[] { Fast }).AsTask().WaitAsync(TestTimeouts.Long);
            }
            Assert.Fail("the handler never ran inline twice in a row in 2,000 calls");
        }

        /// <summary>
        /// Calls (<see cref="FloodCallers"/> at a time, each reply checked) and oneway messages (numbered) as fast as the
        /// server takes them, until <paramref name="stop"/> or the first failure of each sender.
        /// </summary>
        internal async Task<Flood> FloodAsync(CancellationToken stop)
        {
            PageRangeConnection hostile = Hostile;
            var errors = new ConcurrentQueue<Exception>();
            long onewaysSent = 0;
            async Task CallAsync(int caller)
            {
                byte[] request = new byte[16];
                request[0] = Fast;
                try
                {
                    for (long i = 0; !stop.IsCancellationRequested; i++)
                    {
                        BinaryPrimitives.WriteInt64LittleEndian(request.AsSpan(8), (i << 8) | (uint)caller);
                        // Not cancelled by the stop: each call in flight is answered (or fails) and counted.
                        using Transaction reply = await hostile.CallAsync(Echo, request, TestTimeouts.Long, CancellationToken.None);
                        if (!reply.Payload.SequenceEqual(request))
                        {
                            throw new InvalidOperationException($"caller {caller}'s reply {i} is not its request");
                        }
                        Interlocked.Increment(ref _floodAnswered);
                    }
                }
#pragma warning disable CA1031 // Every failure is the flood's outcome, which the test asserts.
                catch (Exception error)
#pragma warning restore CA1031
                {
                    errors.Enqueue(error);
                }
            }
            async Task SendOnewaysAsync()
            {
                byte[] note = new byte[8];
                try
                {
                    for (long sequence = 1; !stop.IsCancellationRequested; sequence++)
                    {
                        BinaryPrimitives.WriteInt64LittleEndian(note, sequence);
                        await hostile.SendOnewayAsync(Note, note, CancellationToken.None);
                        Interlocked.Increment(ref onewaysSent);
                    }
                }
#pragma warning disable CA1031 // As above.
                catch (Exception error)
#pragma warning restore CA1031
                {
                    errors.Enqueue(error);
                }
            }
            Task[] senders = [.. Enumerable.Range(0, FloodCallers).Select(caller => Task.Run(() => CallAsync(caller), CancellationToken.None)), Task.Run(SendOnewaysAsync, CancellationToken.None)];
            await Task.WhenAll(senders);
            return new Flood(FloodAnswered, Interlocked.Read(ref onewaysSent), errors);
        }

        /// <summary>Every honest client's calls (each reply checked); returns how many were answered.</summary>
        internal async Task<int> RunHonestCallsAsync()
        {
            int answered = 0;
            async Task LoopAsync(PageRangeConnection client, int loop)
            {
                byte[] request = new byte[64];
                for (int i = 0; i < HonestCallsPerLoop; i++)
                {
                    BinaryPrimitives.WriteInt32LittleEndian(request, loop);
                    BinaryPrimitives.WriteInt32LittleEndian(request.AsSpan(4), i);
                    using Transaction reply = await client.CallAsync(Work, request, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long);
                    Assert.True(reply.Payload.SequenceEqual(request), $"honest loop {loop}'s reply {i} is not its request");
                    Interlocked.Increment(ref answered);
                }
            }
            await Task.WhenAll(_honest.SelectMany((client, index) =>
                Enumerable.Range(0, HonestLoopsPerClient).Select(loop => Task.Run(() => LoopAsync(client, (index * HonestLoopsPerClient) + loop)))));
            return answered;
        }

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            if (_hostile is not null)
            {
                await _hostile.DisposeAsync();
                foreach (Task<Transaction> call in _heldCalls)
                {
                    try
                    {
                        (await call.WaitAsync(TestTimeouts.Short)).Dispose();
                    }
                    catch (Exception error) when (error is ObjectDisposedException or PageRangeException or TimeoutException)
                    {
                        // The client's own end failed its call (or, after a failed test, left it waiting): nobody reads
                        // that reply, and a failure here must not hide the test's own.
                    }
                }
            }
            foreach (PageRangeConnection client in _honest)
            {
                await client.DisposeAsync();
            }
            await Server.DisposeAsync();
        }
    }
}
