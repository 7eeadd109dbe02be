using System.Runtime.InteropServices;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// A busy-spinning receiver that keeps catching up with a stream of small oneways trails it by a pack
/// (<see cref="ChannelOptions.TrailsStreams"/>): its waits look for the open pack's seal, not for each entry appended,
/// and give that up when the writer pauses inside a pack; a receive pass still takes whatever is committed.
/// </summary>
public sealed class ChannelStreamTrailTests
{
    private static readonly int s_perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / PackLayout.EntrySize(64);

    private static void SendOneway(ChannelPair pair, ulong id, int size = 64)
    {
        byte[] payload = ChannelPair.PayloadFor(id, size);
        Assert.True(pair.Outbound.TrySend(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload));
    }

    /// <summary>Every id of [<paramref name="from"/>, <paramref name="to"/>) as 64 B oneways.</summary>
    private static void SendOneways(ChannelPair pair, ulong from, ulong to)
    {
        for (ulong id = from; id < to; id++)
        {
            SendOneway(pair, id);
        }
    }

    /// <summary>Receives everything the ring and the current pack give now, checking each payload, and frees it.</summary>
    private static List<ulong> ReceiveAll(ChannelPair pair) => [.. pair.ReceiveAllChecked().Select(static record => record.TransactionId)];

    private static IEnumerable<ulong> Ids(ulong from, ulong to)
    {
        for (ulong id = from; id < to; id++)
        {
            yield return id;
        }
    }

    /// <summary>
    /// A stream the receiver keeps up with: the first pack is filled in four chunks, each taken as it lands (four catch-ups),
    /// and the next message turns the pack over. Returns the id the next message should have; the receiver then trails.
    /// </summary>
    private static ulong StreamOnePackTakenInChunks(ChannelPair pair)
    {
        ulong next = 0;
        int chunk = s_perPack / 4;
        for (int part = 0; part < 4; part++)
        {
            ulong end = part == 3 ? (ulong)s_perPack : next + (ulong)chunk;
            SendOneways(pair, next, end);
            Assert.Equal(Ids(next, end), ReceiveAll(pair));
            next = end;
        }
        // The turnover: the full pack is sealed naming the next, whose first entry is this message.
        SendOneway(pair, next);
        return next + 1;
    }

    /// <summary>
    /// A busy-spinning pair whose receiver trails the stream: the first pack taken in chunks, turned over, and the pass
    /// that finished it took the next pack's first message. <paramref name="next"/> is the id the next message should have.
    /// </summary>
    private static ChannelPair TrailingPair(out ulong next)
    {
        var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        next = StreamOnePackTakenInChunks(pair);
        Assert.Equal(Ids(next - 1, next), ReceiveAll(pair));
        Assert.True(pair.Inbound.TrailingStream);
        return pair;
    }

    [Fact]
    public void WaitForTransaction_AStreamItKeepsUpWith_TrailsByAPack_WakesAtTheSealNotAtEachAppend()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        ulong next = StreamOnePackTakenInChunks(pair);
        Assert.False(pair.Inbound.TrailingStream);
        // The pass finishes the full pack (four catch-ups in it: a stream it keeps up with) and takes what the next holds.
        Assert.Equal(Ids(next - 1, next), ReceiveAll(pair));
        Assert.True(pair.Inbound.TrailingStream);
        long looks = pair.Inbound.PackWaitLooks;

        // More appended to the open pack: the waiter's polls do not read its Committed word, and find nothing.
        SendOneways(pair, next, next + 10);
        for (int i = 0; i < 20; i++)
        {
            Assert.False(pair.Inbound.RecordsMaybeReadyPaced, $"poll {i}");
        }
        Assert.Equal(looks, pair.Inbound.PackWaitLooks);
        // An exact look (a wait's last, at its deadline) and a pass take whatever is committed all the same.
        Assert.True(pair.Inbound.TransactionMaybeReady);
        Assert.Equal(Ids(next, next + 10), ReceiveAll(pair));
        Assert.True(pair.Inbound.TrailingStream);

        // The stream fills the pack and turns it over: the next poll sees the seal (the pack's record after it), and the
        // pass takes the rest in order; the next pack is trailed too.
        ulong packEnd = next - 1 + (ulong)s_perPack;
        SendOneways(pair, next + 10, packEnd + 1);
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Equal(Ids(next + 10, packEnd + 1), ReceiveAll(pair));
        Assert.Equal(1, pair.Inbound.PacksTrailed);
        Assert.True(pair.Inbound.TrailingStream);
        Assert.Equal(0, pair.Inbound.TrailsGivenUp);

        // A record of another kind seals the open pack: it comes after it, and a pack sealed that way (no next pack
        // named) ends the trail.
        SendOneway(pair, 5000, PackLayout.MaxPayload + 1);
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.Equal([5000UL], ReceiveAll(pair));
        Assert.False(pair.Inbound.TrailingStream);
        SendOneway(pair, 5001);
        Assert.Equal([5001UL], ReceiveAll(pair));
    }

    [Fact]
    public void RecordsMaybeReadyPaced_TheStreamPausesInsideATrailedPack_FoundAfterStreamTrailLooks_ThenNoLongerTrailed()
    {
        using ChannelPair pair = TrailingPair(out ulong next);
        SendOneways(pair, next, next + 3);

        // The writer stops: the polls wait for a seal that does not come, then give up and find the three messages.
        int polls = 1;
        while (polls < 2 * InboundChannel.StreamTrailLooks && !pair.Inbound.RecordsMaybeReadyPaced)
        {
            polls++;
        }
        Assert.Equal(InboundChannel.StreamTrailLooks, polls);
        Assert.Equal(1, pair.Inbound.TrailsGivenUp);
        Assert.False(pair.Inbound.TrailingStream);
        Assert.Equal(Ids(next, next + 3), ReceiveAll(pair));

        // Not trailing: a message appended now is found within the paced looks' interval, not after a trail's.
        SendOneway(pair, next + 3);
        int looks = 1;
        while (looks < 2 * InboundChannel.StreamTrailLooks && !pair.Inbound.RecordsMaybeReadyPaced)
        {
            looks++;
        }
        Assert.InRange(looks, 1, InboundChannel.PackPollInterval);
        Assert.Equal([next + 3], ReceiveAll(pair));
    }

    [Fact]
    public void WaitForTransaction_TheStreamStopsInsideATrailedPack_ABusySpinWaitStillEndsWithTheMessages()
    {
        using ChannelPair pair = TrailingPair(out ulong next);
        SendOneway(pair, next);

        // The wait's polls give the trail up long before its own timeout, at which a busy-spin wait would look exactly.
        long start = Environment.TickCount64;
        Assert.True(pair.Inbound.WaitForTransaction(TestTimeouts.Long, default));
        Assert.True(Environment.TickCount64 - start < TestTimeouts.Long.TotalMilliseconds / 2, "the wait ended at the trail's end, not at its timeout");
        Assert.Equal([next], ReceiveAll(pair));
    }

    [Fact]
    public async Task Receive_TakesTrailedPacksWhileTheWriterStreamsOnAnotherThread_EveryMessageInOrder()
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 128, rings: 128, strategy: WaitStrategy.BusySpin));
        const int Messages = 200_000;
        var writer = Task.Factory.StartNew(() =>
        {
            var random = new Random(7);
            for (ulong id = 0; id < Messages; id++)
            {
                byte[] payload = ChannelPair.PayloadFor(id, 8 + random.Next(57));
                pair.Outbound.Send(id, ChannelPair.Checksum(payload), TransactionFlags.Oneway, payload, TestTimeouts.Long, default);
                // Pauses inside packs now and then, so trails are given up as well as kept.
                if (random.Next(5_000) == 0)
                {
                    Thread.Sleep(1);
                }
            }
            // Idle: seal the last pack (as the connection's housekeeping does).
            pair.Outbound.DrainFreesAndReleaseIdleSlab();
        }, TaskCreationOptions.LongRunning);

        ulong expected = 0;
        var batch = new TransactionRecord[InboundChannel.ReceiveBatch];
        var receiver = Task.Factory.StartNew(() =>
        {
            while (expected < Messages)
            {
                int taken = pair.Inbound.TryReceiveBatch(batch);
                if (taken == 0)
                {
                    pair.Inbound.WaitForTransaction(TimeSpan.FromMilliseconds(50), default);
                    continue;
                }
                foreach (TransactionRecord record in batch.AsSpan(0, taken))
                {
                    ReadOnlySpan<byte> payload = pair.Inbound.GetPayload(record);
                    Assert.Equal(expected, record.TransactionId);
                    Assert.Equal(ChannelPair.Checksum(payload), record.Code);
                    expected++;
                    pair.Inbound.Free(record);
                }
            }
        }, TaskCreationOptions.LongRunning);

        await Task.WhenAll(writer, receiver).WaitAsync(TestTimeouts.Long);
        Assert.Equal((ulong)Messages, expected);
        Assert.True(pair.Inbound.PacksTrailed > 0, "some packs were trailed");
        // The last pack, sealed idle: the receiver finishes it (and frees it) at its next pass.
        Assert.Equal(0, pair.Inbound.TryReceiveBatch(batch));
        pair.Outbound.DrainFrees();
        Assert.Equal(0, pair.Inbound.PackedLive);
        Assert.Equal(0, pair.Outbound.LiveBuffers);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(PackLayout.MaxPayload)]
    public void Receive_MessagesTakenOneByOne_NeverTrails_TheNextPacksFirstMessageComesAtOnce(int size)
    {
        // A writer that sends now and then, each message taken before the next (an echo): a catch-up per message, which
        // at 1 KiB (three to a pack) is fewer than StreamTrailMaxCatchUps per pack too.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(strategy: WaitStrategy.BusySpin));
        int perPack = (PackLayout.Capacity - PackLayout.HeaderSize) / PackLayout.EntrySize(size);
        for (ulong id = 0; id <= (ulong)(3 * perPack) + 3; id++)
        {
            SendOneway(pair, id, size);
            Assert.Equal([id], ReceiveAll(pair));
            Assert.False(pair.Inbound.TrailingStream);
        }
        Assert.Equal(0, pair.Inbound.PacksTrailed);
    }

    [Theory]
    [InlineData(WaitStrategy.SpinThenPark, true)]
    [InlineData(WaitStrategy.Park, true)]
    [InlineData(WaitStrategy.BusySpin, false)]
    public void Receive_AReceiverThatParksOrWithTheOptionOff_NeverTrails(WaitStrategy strategy, bool option)
    {
        // A parking receiver would be woken by every append to a pack it does not take.
        ChannelOptions options = ChannelPair.SmallOptions(strategy: strategy);
        using var pair = new ChannelPair(new ChannelOptions
        {
            PackSmallOneways = options.PackSmallOneways,
            RegionSize = options.RegionSize,
            TxRingCapacity = options.TxRingCapacity,
            FreeRingCapacity = options.FreeRingCapacity,
            WaitStrategy = strategy,
            SpinDuration = options.SpinDuration,
            ParkTimeout = options.ParkTimeout,
            TrailStreams = option,
        });
        ulong next = StreamOnePackTakenInChunks(pair);
        Assert.Equal([next - 1], ReceiveAll(pair));
        Assert.False(pair.Inbound.TrailingStream);
        Assert.Equal(0, pair.Inbound.PacksTrailed);
        Assert.DoesNotContain("packs taken whole behind a stream", pair.Inbound.DumpState());
    }

    [Fact]
    public void Receive_ALaterRecordWhileATrailedPackIsNotSealed_ViolationAsBefore()
    {
        using ChannelPair pair = TrailingPair(out ulong next);
        SendOneway(pair, next);
        Assert.False(pair.Inbound.RecordsMaybeReadyPaced);
        long pack = pair.Outbound.OpenPackOffset;
        // A call seals the pack before its record; a hostile writer then takes the seal back.
        Assert.True(pair.Outbound.TrySend(50, 4, TransactionFlags.TwoWay, new byte[8], new RecordContext(1, 0, CallStatus.Ok)));
        uint unsealed = (uint)(2 * PackLayout.EntrySize(64));
        MemoryMarshal.Write(pair.Outbound.Pages.GetSpan(pack, 4), in unsealed);

        // The waiter sees a later record; the pass takes the entry Committed covers, then meets the unsealed pack with a
        // later record: a violation, every time, and the call is never delivered.
        Assert.True(pair.Inbound.RecordsMaybeReadyPaced);
        Assert.True(pair.Inbound.TryReceive(out TransactionRecord first));
        Assert.Equal(next, first.TransactionId);
        for (int i = 0; i < 3; i++)
        {
            ProtocolViolationException violation = Assert.Throws<ProtocolViolationException>(() => pair.Inbound.TryReceive(out _));
            Assert.Contains("not sealed", violation.Message);
        }
    }
}
