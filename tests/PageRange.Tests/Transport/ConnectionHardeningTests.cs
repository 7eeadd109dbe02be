using System.Diagnostics;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A misbehaving peer against the connection (issue 11 items 1, 7, 8, 13): bounded reader passes, payload copies,
/// indexed cancels, and a closed connection that lets go of everything at once. In the non-parallel collection:
/// descriptors and mappings are counted over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ConnectionHardeningTests(ITestOutputHelper output)
{
    /// <summary>A reply to no call of ours: the victim frees it at once, so the peer can publish another for ever.</summary>
    private const ulong BogusReplyId = (1UL << 16) | 0xFFFF;

    [Fact]
    public async Task Call_PeerKeepsTheRingBusyForever_TimesOutOnTimeAndDisposeReturns()
    {
        (int Descriptors, int Mappings) baseline = default;
        string name;
        var clock = new Stopwatch();
        {
            ConnectionPair pair = await ConnectionPair.CreateAsync();
            name = pair.Client.Name;
            PageRangeConnection victim = pair.Client;
            long flooded = 0;
            // Every record the victim routes, the peer replaces with another: the ring is never empty when the reader
            // looks, which used to keep it in its drain loop for ever.
            victim.RecordRoutedForTest = () =>
            {
                if (pair.Server.Outbound.TrySend(BogusReplyId, 0, TransactionFlags.Reply, [1, 2, 3]))
                {
                    flooded++;
                }
            };
            Assert.True(pair.Server.Outbound.TrySend(BogusReplyId, 0, TransactionFlags.Reply, [1, 2, 3]));

            clock.Start();
            // Nobody serves the call: it can only end by its timeout.
            Assert.Throws<TimeoutException>(() => victim.Call(1, [1], TimeSpan.FromMilliseconds(300)));
            TimeSpan timedOut = clock.Elapsed;
            output.WriteLine($"call timed out after {timedOut.TotalMilliseconds:F0} ms, {flooded} records flooded so far");
            Assert.True(timedOut < TimeSpan.FromSeconds(20), $"a 300 ms call took {timedOut}");
            Assert.True(flooded > 16, "the peer flooded more than a ring");

            await victim.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
            await pair.Server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
            baseline = FaultResources.Naming($"pagerange:{name}");
        }
        Assert.Equal((0, 0), baseline);
    }

    [Fact]
    public async Task Violation_AfterTransactionsNobodyReceived_RegionsReleasedAtOnce()
    {
        // The attacker: transport parts only. Its region has the same name as the victim's, so the counts below hold
        // both: two descriptors (the victim's region, the victim's view of the attacker's) are the victim's.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        string victimRegion = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimRegion);
        output.WriteLine($"connected: {connected}");

        const int Published = 12;
        for (int i = 0; i < Published; i++)
        {
            Assert.True(attacker.Outbound.TrySend((ulong)i + 1, 5, i % 2 == 0 ? TransactionFlags.Oneway : TransactionFlags.TwoWay, new byte[4096],
                i % 2 == 0 ? default : new RecordContext((ulong)i + 1, 0, CallStatus.Ok)));
        }
        // The victim's background reader routes them (nobody receives): they are live in its region.
        await WaitUntilAsync(() => victim.LiveIncomingTransactions == Published, "the victim routed every transaction");
        long resident = victim.Inbound.Region.ResidentBytes;
        Assert.True(resident >= Published * 4096L, $"{resident} bytes resident");

        // Now a corrupt transaction ring tail: more than a ring ahead of the victim's head.
        ulong tail = attacker.Outbound.Sent + (ulong)(attacker.Outbound.Layout.TxRingCapacity * 4);
        System.Runtime.InteropServices.MemoryMarshal.Write(attacker.Handshake.PeerRegion.GetSpan(RegionHeaderLayout.TxTailOffset, 8), in tail);

        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim noticed the violation");
        // Without the owner disposing anything: the victim's region and its view of the attacker's go at once.
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Descriptors == connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Throws<ObjectDisposedException>(() => victim.Inbound.Region.ResidentBytes);
        Assert.Throws<ObjectDisposedException>(() => victim.Outbound.Region.ResidentBytes);
        Assert.Throws<ProtocolViolationException>(() => victim.TryReceive(out _));
        output.WriteLine($"after the violation: {FaultResources.Naming(victimRegion)}");
    }

    [Fact]
    public async Task Dispose_TransactionsNobodyReceived_RegionReleasedWithoutTheGc()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        for (int i = 0; i < 8; i++)
        {
            pair.Client.SendOneway(1, new byte[100]);
        }
        // The background reader routes them within a park timeout: one ready, seven backlogged behind it.
        await WaitUntilAsync(() => pair.Server.LiveIncomingTransactions == 8, "the server routed every oneway");

        await pair.Server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);

        // No GC ran: the undelivered transactions were freed by Dispose, so nothing keeps the region mapped.
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
        Assert.Throws<ObjectDisposedException>(() => pair.Server.Inbound.Region.ResidentBytes);
    }

    [Fact]
    public async Task Dispose_WhileHoldingOneTransaction_RegionStaysUntilItIsDisposed()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        pair.Client.SendOneway(1, [1, 2, 3]);
        pair.Client.SendOneway(1, [4]);
        Transaction held = pair.Server.Receive();
        await WaitUntilAsync(() => pair.Server.LiveIncomingTransactions == 2, "the second oneway was routed");

        await pair.Server.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);

        // The backlogged one is freed; the held one is still readable until its owner disposes it.
        Assert.Equal(1, pair.Server.LiveIncomingTransactions);
        Assert.Equal([1, 2, 3], held.Payload.ToArray());
        held.Dispose();
        Assert.Throws<ObjectDisposedException>(() => pair.Server.Inbound.Region.ResidentBytes);
    }

    [Theory]
    [InlineData(IncomingPayloadCopy.Always, true)]
    [InlineData(IncomingPayloadCopy.Never, false)]
    [InlineData(IncomingPayloadCopy.Auto, false)]
    public async Task Payload_SenderRewritesItAfterPublishing_CopyDecidesWhatTheReceiverSees(IncomingPayloadCopy mode, bool copied)
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.CopyIncomingPayloads = mode;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        Assert.Equal(copied, pair.Server.CopiesIncomingPayloads);
        pair.Client.SendOneway(1, [1, 2, 3, 4]);
        using Transaction message = pair.Server.Receive();

        // The sender writes the published buffer again, through its own (writable) view of the receiver's region.
        long offset = pair.Client.Outbound.Layout.DataOffset + message.Slot.Record.Offset;
        new byte[] { 9, 9, 9, 9 }.CopyTo(pair.Client.Outbound.Region.GetSpan(offset, 4));

        byte[] expected = copied ? [1, 2, 3, 4] : [9, 9, 9, 9];
        Assert.Equal(expected, message.Payload.ToArray());
        Assert.Equal(expected, message.Memory.ToArray());
    }

    [Fact]
    public async Task Payload_Copied_ReturnedOnDisposeAndCallsWork()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.CopyIncomingPayloads = IncomingPayloadCopy.Always;
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        using var stop = new CancellationTokenSource();
        Thread echo = ConnectionPair.StartEchoThread(pair.Server, stop.Token);
        // Up to the inline limit and past it: a payload inline in the ring or in the direct lines (DirectCallLayout,
        // DirectReplyLayout) is private already, a buffer's is copied.
        for (int i = 0; i < 100; i++)
        {
            int size = i * 4;
            byte[] request = [.. Enumerable.Range(0, size).Select(b => (byte)(b + i))];
            using Transaction reply = pair.Client.Call(1, request, TestTimeouts.Long);
            Assert.Equal(request, reply.Payload.ToArray());
        }
        Assert.InRange(pair.Client.Outbound.InlineSent + pair.Client.Outbound.DirectCallsSent, 1, 99);
        Assert.InRange(pair.Client.Inbound.InlineReceived + pair.Client.Inbound.DirectRepliesReceived, 1, 99);
        await stop.CancelAsync();
        Assert.True(echo.Join(TestTimeouts.Long));
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Fact]
    public async Task Payload_Copied_RecordsNamingOneRangeAgain_ViolationOnceTheyAddUpToMoreThanTheDataArea()
    {
        // Each record names a valid range on its own; together they add up to more than the data area, which an honest
        // writer's live (disjoint) buffers never do. Copied, each would have been a new array of the range's size: one
        // region's worth per incoming slot (gigabytes with the default sizes).
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.CopyIncomingPayloads = IncomingPayloadCopy.Always;
        await using RawAttack attack = await RawAttack.StartAsync(options);
        (RawPeer attacker, PageRangeConnection victim) = attack;
        await attack.ConnectNeighbourAsync();
        (int Descriptors, int Mappings) connected = FaultResources.Naming(attack.RegionName);
        Assert.True(victim.CopiesIncomingPayloads);
        const int Length = 300 * 1024;
        const int Copies = 6;
        Assert.True(Copies * (long)Length > victim.Inbound.Layout.DataSize);

        Assert.True(victim.TryHoldReaderRoleForTest(), "the reader role was taken");
        try
        {
            Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.Oneway, new byte[Length]));
            RegionLayout layout = attacker.Outbound.Layout;
            ulong sent = attacker.Outbound.Sent;
            Span<byte> ring = attacker.Handshake.PeerRegion.GetSpan(layout.TxRingOffset, layout.TxRingCapacity * TransactionRecordLayout.Size);
            int first = (int)((sent - 1) % (ulong)layout.TxRingCapacity) * TransactionRecordLayout.Size;
            TransactionRecordLayout record = System.Runtime.InteropServices.MemoryMarshal.Read<TransactionRecordLayout>(ring[first..]);
            Assert.Equal((uint)Length, record.Length);
            for (int i = 0; i < Copies - 1; i++)
            {
                int at = (int)((sent + (ulong)i) % (ulong)layout.TxRingCapacity) * TransactionRecordLayout.Size;
                System.Runtime.InteropServices.MemoryMarshal.Write(ring[at..], in record);
            }
            ulong tail = sent + Copies - 1;
            System.Runtime.InteropServices.MemoryMarshal.Write(attacker.Handshake.PeerRegion.GetSpan(RegionHeaderLayout.TxTailOffset, 8), in tail);
        }
        finally
        {
            victim.ReleaseReaderRoleForTest();
        }

        // The copies made before it go back with the transactions nobody received.
        await attack.AssertOnlyTheVictimClosedAsync(connected);
        PageRangeException error = Assert.ThrowsAny<PageRangeException>(() => victim.TryReceive(out _));
        output.WriteLine(error.ToString());
        Assert.Contains("add up to more than", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Receive_PeerPublishesMoreLiveBuffersThanItsFreeRingAllows_OnlyThatConnectionCloses()
    {
        // Nobody receives: every record the victim routes holds an incoming slot. An honest writer stops at its live
        // limit; this one replays one valid record as fast as the victim takes them, past every slot the victim has.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        await attack.ConnectNeighbourAsync();
        (int Descriptors, int Mappings) connected = FaultResources.Naming(attack.RegionName);

        // Larger than a pack's entry: a record and a buffer of its own, which the attacker then replays.
        Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.Oneway, new byte[PackLayout.MaxPayload + 1]));
        RegionLayout layout = attacker.Outbound.Layout;
        Span<byte> header = attacker.Handshake.PeerRegion.GetSpan(0, layout.TxRingOffset + (layout.TxRingCapacity * TransactionRecordLayout.Size));
        ulong tail = attacker.Outbound.Sent;
        TransactionRecordLayout record = System.Runtime.InteropServices.MemoryMarshal.Read<TransactionRecordLayout>(
            header[(layout.TxRingOffset + ((int)((tail - 1) % (ulong)layout.TxRingCapacity) * TransactionRecordLayout.Size))..]);
        Assert.Equal((uint)PackLayout.MaxPayload + 1, record.Length);
        Assert.Equal(0u, record.Flags & PackLayout.RecordFlag);

        var clock = Stopwatch.StartNew();
        long forged = 0;
        while (!victim.PeerDied.IsCancellationRequested)
        {
            Assert.True(clock.Elapsed < TestTimeouts.Long, $"no violation after {forged} forged records");
            ulong head = Volatile.Read(ref System.Runtime.InteropServices.MemoryMarshal.AsRef<ulong>(header[RegionHeaderLayout.TxHeadOffset..]));
            if (tail - head >= (ulong)layout.TxRingCapacity)
            {
                Thread.Yield();
                continue;
            }
            System.Runtime.InteropServices.MemoryMarshal.Write(header[(layout.TxRingOffset + ((int)(tail % (ulong)layout.TxRingCapacity) * TransactionRecordLayout.Size))..], in record);
            tail++;
            Volatile.Write(ref System.Runtime.InteropServices.MemoryMarshal.AsRef<ulong>(header[RegionHeaderLayout.TxTailOffset..]), tail);
            forged++;
        }
        output.WriteLine($"{forged} records forged before the victim closed");

        await attack.AssertOnlyTheVictimClosedAsync(connected);
        PageRangeException error = Assert.ThrowsAny<PageRangeException>(() => victim.TryReceive(out _));
        Assert.Contains("live buffers, beyond what its free ring allows", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PeerLeavesButKeepsOurRegionsDescriptor_EveryPageWeBackedGoesBack()
    {
        // A client that connects, keeps the server's memfd and drops the connection, again and again, held about 130 KiB
        // of the server's memory (its header and rings, backed and charged to the server) per connection, for as long as
        // it kept the descriptors. The attacker's own descriptor and mapping of the victim's region see what is left.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        PageRange.Memory.SharedRegion kept = attacker.Handshake.PeerRegion;
        long header = victim.Inbound.Layout.HeaderBytes;
        Assert.True(kept.ResidentBytes >= header, $"{kept.ResidentBytes} bytes backed, the header is {header}");

        await attacker.Handshake.Control.DisposeAsync();
        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim noticed the end");
        await victim.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        await WaitUntilAsync(() => kept.ResidentBytes == 0, "every page of the victim's region went back to the kernel");
        // Anything the peer writes now is backed as its own.
        Assert.Equal(0, kept.GetSpan(0, 8)[0]);
    }

    [Fact]
    public async Task OurCloseFirst_ThePeerStillReadsOurHeaderUntilItNoticesTheEnd()
    {
        // Closed by us first, an honest peer may still read our ring indices and free ring before it sees the end: zeros
        // there would be a protocol violation to it, not our death. So our pages stay until its descriptor goes.
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        PageRange.Memory.SharedRegion kept = attacker.Handshake.PeerRegion;
        long header = victim.Inbound.Layout.HeaderBytes;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(attack.RegionName);

        await victim.DisposeAsync().AsTask().WaitAsync(TestTimeouts.Long);
        // The victim let go of its region (its last reference, where a punch would run)...
        await WaitUntilAsync(() => FaultResources.Naming(attack.RegionName).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        // ...and the header the peer reads is still there.
        Assert.True(kept.ResidentBytes >= header, $"{kept.ResidentBytes} bytes backed after our close, the header is {header}");
        RegionHeaderLayout read = System.Runtime.InteropServices.MemoryMarshal.Read<RegionHeaderLayout>(kept.GetSpan(0, System.Runtime.CompilerServices.Unsafe.SizeOf<RegionHeaderLayout>()));
        Assert.Equal((uint)attack.Options.FreeRingCapacity, read.FreeRingCapacity);
    }

    [Fact]
    public void CopyIncomingPayloads_Undefined_Throws()
    {
        var options = new PageRangeOptions();
        Assert.Equal(IncomingPayloadCopy.Auto, options.CopyIncomingPayloads);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.CopyIncomingPayloads = (IncomingPayloadCopy)7);
        options.CopyIncomingPayloads = IncomingPayloadCopy.Always;
        Assert.Equal(IncomingPayloadCopy.Always, options.Clone().CopyIncomingPayloads);
    }

    [Fact]
    public async Task Cancel_PeerReusesOneIdForManyLiveCalls_TheNewestLiveOneIsCancelledAndEveryCallIsFreed()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        const ulong Id = (5UL << TransactionIds.PendingCallIndexBits) | 3;
        const int Count = 12;
        for (int i = 0; i < Count; i++)
        {
            // The client's transport used as a raw peer: a dozen live calls under one id, none of them its own calls.
            Assert.True(pair.Client.Outbound.TrySend(Id, (uint)i, TransactionFlags.TwoWay, [(byte)i], new RecordContext(9, 0, CallStatus.Ok)));
        }
        var held = new List<Transaction>();
        for (int i = 0; i < Count; i++)
        {
            held.Add(pair.Server.Receive());
        }
        Assert.Equal(Count, pair.Server.LiveCallsIndexedForTest);
        CancellationToken[] tokens = [.. held.Select(t => t.CallCancelled)];

        await pair.Client.SendCancelForTest(Id).AsTask().WaitAsync(TestTimeouts.Long);
        await WaitUntilAsync(() => tokens[^1].IsCancellationRequested, "the cancel reached the newest call of the id");
        Assert.Equal(1, tokens.Count(t => t.IsCancellationRequested));
        // The newest answered and freed: the id's next cancel reaches the newest call still live.
        held[^1].Reply([1]);
        held[^1].Dispose();
        await pair.Client.SendCancelForTest(Id).AsTask().WaitAsync(TestTimeouts.Long);
        await WaitUntilAsync(() => tokens[^2].IsCancellationRequested, "the second cancel reached the next newest call");
        Assert.Equal(2, tokens.Count(t => t.IsCancellationRequested));

        foreach (Transaction call in held.Take(Count - 1))
        {
            call.Reply([2]);
            call.Dispose();
        }
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
        Assert.Equal(0, pair.Server.LiveCallsIndexedForTest);
        // The replies went to no call of the client's: it freed them, and both ends are still up.
        Assert.True(pair.Server.IsPeerAlive);
        Assert.True(pair.Client.IsPeerAlive);
        await WaitUntilAsync(() => pair.Server.Outbound.LiveBuffers == 0, "the client freed the stray replies");
    }

    [Fact]
    public async Task CancelFlood_UnknownIds_IgnoredAndTheRealCancelStillLands()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        // 40 calls live on the server, so that a scan per frame would have had work to do.
        var calls = Enumerable.Range(0, 40).Select(i => pair.Client.CallAsync(1, new byte[] { (byte)i }, TestTimeouts.Long).AsTask()).ToArray();
        var held = new List<Transaction>();
        for (int i = 0; i < 40; i++)
        {
            held.Add(pair.Server.Receive());
        }
        CancellationToken[] tokens = [.. held.Select(t => t.CallCancelled)];

        for (int i = 0; i < 5_000; i++)
        {
            await pair.Client.SendCancelForTest(0xDEAD_0000UL + (ulong)i).AsTask().WaitAsync(TestTimeouts.Long);
        }
        Transaction target = held[17];
        await pair.Client.SendCancelForTest(target.Id).AsTask().WaitAsync(TestTimeouts.Long);

        await WaitUntilAsync(() => tokens[17].IsCancellationRequested, "the real cancel reached its handler");
        Assert.Equal(1, tokens.Count(t => t.IsCancellationRequested));
        Assert.True(pair.Server.IsPeerAlive);
        foreach (Transaction call in held)
        {
            call.Reply(call.Payload);
            call.Dispose();
        }
        foreach (Task<Transaction> call in calls)
        {
            (await call.WaitAsync(TestTimeouts.Long)).Dispose();
        }
    }
}
