using PageRange.Allocation;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// A receiver that forges frees inside a slab: a free at no slot's start, a double free, a free of a slot never
/// published. Each is a protocol violation of the writer's channel (and closes only that connection); a free of a slot
/// still on the ring is ignored and counted, as a buffer's is. In the non-parallel collection: the connection test
/// counts descriptors and mappings over the whole process.
/// </summary>
[Collection(CrossProcessCollection.Name)]
[Trait("Category", "Hostile")]
public sealed class ChannelSlabHostileTests(ITestOutputHelper output)
{
    /// <summary>
    /// Sends <paramref name="count"/> small messages of kind <paramref name="flags"/> (slots of the oneway or the call
    /// slabs), takes them off the ring as the raw peer, and returns their offsets.
    /// </summary>
    private static ulong[] SendSlots(ChannelPair pair, RawReceiverPeer peer, int count, TransactionFlags flags = TransactionFlags.Oneway)
    {
        ulong[] offsets = new ulong[count];
        for (int i = 0; i < count; i++)
        {
            Assert.True(pair.Outbound.TrySend((ulong)i, 0, flags, new byte[64]));
            offsets[i] = peer.PeekRecord((ulong)i).BufferOffset;
        }
        peer.AdvanceTxHead((ulong)count);
        Assert.Equal(1, SlabsOf(pair, flags).SlabsInUse);
        return offsets;
    }

    private static BufferSlabs SlabsOf(ChannelPair pair, TransactionFlags flags) =>
        (flags & TransactionFlags.Oneway) != 0 ? pair.Outbound.Slabs : pair.Outbound.CallSlabs;

    private static void AssertViolationThenClosed(ChannelPair pair)
    {
        long header = pair.Inbound.Layout.HeaderBytes;
        var violation = Assert.Throws<ProtocolViolationException>(() => pair.Outbound.DrainFrees());
        Assert.Contains("slab", violation.Message, StringComparison.Ordinal);
        // What the connection does with a violation: close the writing side, which gives back every page it backed.
        pair.Outbound.Dispose();
        Assert.Equal(header, pair.Inbound.Region.ResidentBytes);
    }

    [Theory]
    [InlineData(8, TransactionFlags.Oneway)]
    [InlineData(BufferSlab.SlotSize - 8, TransactionFlags.Oneway)]
    [InlineData(BufferSlab.SlotSize + 64, TransactionFlags.Oneway)]
    [InlineData(8, TransactionFlags.TwoWay)]
    [InlineData(BufferSlab.SlotSize + 64, TransactionFlags.Reply)]
    public void DrainFrees_FreeInsideASlabAtNoSlotsStart_ProtocolViolation(long within, TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        var peer = new RawReceiverPeer(pair);
        ulong[] offsets = SendSlots(pair, peer, 2, flags);
        peer.PublishFree(offsets[0] + (ulong)within);
        AssertViolationThenClosed(pair);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway)]
    [InlineData(TransactionFlags.TwoWay)]
    [InlineData(TransactionFlags.ErrorReply)]
    public void DrainFrees_SlotFreedTwice_ProtocolViolation(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        var peer = new RawReceiverPeer(pair);
        ulong[] offsets = SendSlots(pair, peer, 2, flags);
        peer.PublishFree(offsets[1]);
        peer.PublishFree(offsets[1]);
        AssertViolationThenClosed(pair);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway)]
    [InlineData(TransactionFlags.TwoWay)]
    public void DrainFrees_SlotReservedButNeverPublished_ProtocolViolation(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        var peer = new RawReceiverPeer(pair);
        ulong[] offsets = SendSlots(pair, peer, 1, flags);
        // A zero-copy reservation takes the next slot; the peer guesses its offset and frees it before it is published.
        Assert.True(pair.Outbound.TryReserve(64, oneway: flags == TransactionFlags.Oneway, out PendingBuffer pending));
        Assert.Equal((long)offsets[0] + BufferSlab.SlotSize, pending.Offset);
        peer.PublishFree((ulong)pending.Offset);
        AssertViolationThenClosed(pair);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway)]
    [InlineData(TransactionFlags.Reply)]
    public void DrainFrees_SlotStillOnTheRing_IgnoredCountedAndFreedLater(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        var peer = new RawReceiverPeer(pair);
        Assert.True(pair.Outbound.TrySend(1, 0, flags, new byte[64]));
        ulong offset = peer.PeekRecord(0).BufferOffset;
        // Freed before the peer took the record off the ring: binder's delivery rule ignores it.
        peer.PublishFree(offset);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.UndeliveredFrees);
        Assert.Equal(1, pair.Outbound.IgnoredFrees);
        Assert.Equal(1, pair.Outbound.LiveBuffers);

        peer.AdvanceTxHead(1);
        peer.PublishFree(offset);
        Assert.Equal(1, pair.Outbound.DrainFreesAndReleaseIdleSlab());
        Assert.Equal(0, pair.Outbound.LiveBuffers);
        Assert.Equal(0, pair.Outbound.Slabs.SlabsInUse);
        Assert.Equal(0, pair.Outbound.CallSlabs.SlabsInUse);
    }

    [Theory]
    [InlineData(TransactionFlags.Oneway)]
    [InlineData(TransactionFlags.TwoWay)]
    public void DrainFrees_PastEverySlabWhereNoBufferStarts_IgnoredAsAStrayFree(TransactionFlags flags)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pack: false));
        var peer = new RawReceiverPeer(pair);
        ulong[] offsets = SendSlots(pair, peer, 1, flags);
        // Outside the slab: the allocator's rule for a buffer that is not live applies (binder logs and ignores it).
        peer.PublishFree(offsets[0] + (ulong)BufferSlab.Bytes + 8);
        Assert.Equal(1, pair.Outbound.DrainFrees());
        Assert.Equal(1, pair.Outbound.IgnoredFrees);
        Assert.Equal(1, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public async Task RawPeer_ForgesAFreeInsideASlab_OnlyThatConnectionClosesAndLetsGoOfEverything()
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        // An honest neighbour on the same listener: it must not notice.
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();
        string victimView = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimView);
        output.WriteLine($"connected: {connected}");

        // The victim sends small oneways into the attacker's region: slots of one slab (with a metadata block, a deadline,
        // so they are not packed).
        var withDeadline = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddHours(1) };
        for (int i = 0; i < 4; i++)
        {
            victim.SendOneway(1, new byte[64], withDeadline);
        }
        Assert.True(attacker.Inbound.TryReceive(out TransactionRecord first));
        Assert.True(attacker.Inbound.TryReceive(out TransactionRecord second));
        Assert.Equal(BufferSlab.SlotSize, second.Offset - first.Offset);
        long attackerResident = attacker.Inbound.Region.ResidentBytes;
        Assert.True(attackerResident > attacker.Inbound.Layout.HeaderBytes);

        // The forged free: 8 bytes into the first slot. The victim sees it at its next drain (a send of more than
        // LazyDrainMaxMessage bytes drains first) and closes the connection.
        attacker.Inbound.Free(new TransactionRecord(first.TransactionId, first.Offset + 8, 8, 0, TransactionFlags.Oneway));
        Assert.Throws<ProtocolViolationException>(() => victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]));
        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim closed the connection");
        Assert.False(victim.IsPeerAlive);
        // The victim's pages in the attacker's region (the slab's) are punched out with its writing side, which the
        // close disposes in the background.
        await WaitUntilAsync(() => attacker.Inbound.Region.ResidentBytes == attacker.Inbound.Layout.HeaderBytes, "the slab's pages were given back");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Descriptors < connected.Descriptors, "the victim closed its descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimView).Mappings < connected.Mappings, "the victim unmapped its views");
        output.WriteLine($"after the violation: {FaultResources.Naming(victimView)}");

        // The neighbour goes on: a oneway each way and a call.
        honestClient.SendOneway(2, new byte[64]);
        using (Transaction received = await honestServer.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(2u, received.Code);
        }
        Assert.True(honestClient.IsPeerAlive);
        Assert.True(honestServer.IsPeerAlive);
    }

    [Fact]
    public async Task RawPeer_ForgesAFreeInsideACallSlab_OnlyThatConnectionClosesAndItsCallsFail()
    {
        // Larger than a payload carried inline or in the direct call lines (the neighbour's synchronous call below), within
        // a slab's slot.
        const int SlabPayload = DirectCallLayout.MaxPayload + 8;
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        (PageRangeConnection honestClient, PageRangeConnection honestServer) = await attack.ConnectNeighbourAsync();

        // The victim calls into the attacker's region twice: slots of one call slab (payloads too large to go inline).
        Task<Transaction> firstCall = victim.CallAsync(1, new byte[SlabPayload]).AsTask();
        Task<Transaction> secondCall = victim.CallAsync(1, new byte[SlabPayload]).AsTask();
        Assert.True(attacker.Inbound.TryReceive(out TransactionRecord first));
        Assert.True(attacker.Inbound.TryReceive(out TransactionRecord second));
        Assert.True((first.Flags & TransactionFlags.TwoWay) != 0);
        Assert.Equal(BufferSlab.SlotSize, Math.Abs(second.Offset - first.Offset));
        Assert.True(attacker.Inbound.Region.ResidentBytes > attacker.Inbound.Layout.HeaderBytes);

        // The forged free: 8 bytes into a call's slot, seen by the victim's next drain (a large send drains first).
        attacker.Inbound.Free(new TransactionRecord(first.TransactionId, first.Offset + 8, 8, 0, TransactionFlags.TwoWay));
        Assert.Throws<ProtocolViolationException>(() => victim.SendOneway(1, new byte[OutboundChannel.LazyDrainMaxMessage + 1]));
        await WaitUntilAsync(() => victim.PeerDied.IsCancellationRequested, "the victim closed the connection");
        // The calls waiting on the attacker fail instead of hanging, and the slab's pages go with the writing side.
        await Assert.ThrowsAnyAsync<PageRangeException>(() => firstCall.WaitAsync(TestTimeouts.Long));
        await Assert.ThrowsAnyAsync<PageRangeException>(() => secondCall.WaitAsync(TestTimeouts.Long));
        await WaitUntilAsync(() => attacker.Inbound.Region.ResidentBytes == attacker.Inbound.Layout.HeaderBytes, "the call slab's pages were given back");

        // The neighbour goes on with a small call, which takes a slot of its own connection's call slab.
        Task serving = Task.Run(() =>
        {
            using Transaction call = honestServer.Receive();
            call.Reply(call.Payload);
        });
        using (Transaction reply = honestClient.Call(3, new byte[SlabPayload]))
        {
            Assert.Equal(SlabPayload, reply.Payload.Length);
        }
        await serving.WaitAsync(TestTimeouts.Long);
        Assert.Equal(1, honestClient.Outbound.CallSlabs.SlabsOpened);
        Assert.True(honestClient.IsPeerAlive);
    }
}
