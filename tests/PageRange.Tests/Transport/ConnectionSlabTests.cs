using System.Diagnostics;
using PageRange.Allocation;
using PageRange.Memory;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Transport;

/// <summary>
/// Small oneways between two connections share slabs, still one at a time and in order for the receiver; an idle
/// writer gives back the frees of a burst and its empty slab, so the shrinker can reclaim the pages.
/// </summary>
public sealed class ConnectionSlabTests
{
    [Fact]
    public async Task SendOneway_SmallMessages_ReceivedOneAtATimeInOrderFromSlots()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        // Fewer than the live limit of 64-slot rings (56: an eighth of the transaction ring is kept for inline
        // payloads): all of them are live at once, in one slab. With a metadata block (a deadline) a small oneway is not
        // packed: slabs serve those.
        const int count = 50;
        var withDeadline = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddHours(1) };
        for (int i = 0; i < count; i++)
        {
            pair.Client.SendOneway((uint)i, BitConverter.GetBytes(i), withDeadline);
        }
        Assert.True(pair.Client.Outbound.Slabs.SlabsOpened > 0);
        long? previousOffset = null;
        for (int i = 0; i < count; i++)
        {
            using Transaction transaction = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
            Assert.Equal((uint)i, transaction.Code);
            Assert.Equal(i, BitConverter.ToInt32(transaction.Payload));
            // binder's rule: the next oneway is not handed out while this one is held.
            Assert.False(pair.Server.TryReceive(out _));
            long offset = transaction.Slot.Record.Offset;
            if (previousOffset is { } previous && offset != previous)
            {
                Assert.Equal(0, Math.Abs(offset - previous) % BufferSlab.SlotSize);
            }
            previousOffset = offset;
        }
    }

    [Fact]
    public async Task SendOneway_BurstThenIdle_FreesTakenSlabGivenBackAndTheShrinkerReclaimsThePages()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        SharedRegion serverRegion = pair.Server.Inbound.Region;
        long header = pair.Server.Inbound.Layout.HeaderBytes;
        for (int i = 0; i < 40; i++)
        {
            pair.Client.SendOneway(1, new byte[200]);
        }
        for (int i = 0; i < 40; i++)
        {
            using Transaction transaction = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        }
        Assert.True(serverRegion.ResidentBytes > header);

        // Nothing more is sent: the client's housekeeping (every park timeout) drains the frees left for a batch and
        // gives back the empty slab, so its pages join the LRU.
        await WaitUntilAsync(() => pair.Client.Outbound.LiveBuffers == 0 && pair.Client.Outbound.Slabs.SlabsInUse == 0, "the idle writer took the frees back");
        Shrinker.Shared.Scan(long.MaxValue);
        Assert.Equal(header, serverRegion.ResidentBytes);
    }
}
