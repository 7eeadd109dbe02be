using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>The hot path (reserve, copy, publish, wake-if-parked, receive, free, drain) allocates nothing in steady state.</summary>
public sealed class ChannelAllocationTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(64)]
    [InlineData(4096)]
    [InlineData(65536)]
    public void PingLoop_SteadyState_AllocatesNothing(int size)
    {
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64, rings: 64));
        byte[] payload = new byte[size];
        ChannelPair.Fill(payload, 1);

        for (int i = 0; i < 2_000; i++)
        {
            Ping(pair, payload, (ulong)i);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20_000; i++)
        {
            Ping(pair, payload, (ulong)i);
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        // A small oneway travels in a pack (opened, appended to, sealed, finished and freed along the loop): the open
        // one stays live until the writer's housekeeping seals it.
        bool packed = size <= PackLayout.MaxPayload;
        Assert.Equal(packed, pair.Outbound.PackedSent > 20_000);
        Assert.Equal(packed ? 1 : 0, pair.Outbound.LiveBuffers);
    }

    [Fact]
    public void PingLoop_SteadyState_ResidentBytesStayPut()
    {
        // Freed pages stay backed (Available) until the shrinker runs, so the loop re-uses them without fallocate.
        using var pair = new ChannelPair(ChannelPair.SmallOptions(pages: 64, rings: 64));
        byte[] payload = new byte[10_000];
        for (int i = 0; i < 100; i++)
        {
            Ping(pair, payload, (ulong)i);
        }
        long resident = pair.Inbound.Region.ResidentBytes;
        for (int i = 0; i < 1_000; i++)
        {
            Ping(pair, payload, (ulong)i);
        }
        Assert.Equal(resident, pair.Inbound.Region.ResidentBytes);
    }

    private static void Ping(ChannelPair pair, byte[] payload, ulong id)
    {
        // Send (not TrySend) so its deadline bookkeeping is measured too; there is always room, so it never waits.
        pair.Outbound.Send(id, 5, TransactionFlags.Oneway, payload, TestTimeouts.Short, default);
        if (!pair.Inbound.WaitForTransaction(TestTimeouts.Short, default) || !pair.Inbound.TryReceive(out TransactionRecord record))
        {
            throw new InvalidOperationException("The transaction did not arrive.");
        }
        ReadOnlySpan<byte> span = pair.Inbound.GetPayload(record);
        ReadOnlyMemory<byte> memory = pair.Inbound.GetPayloadMemory(record);
        if (span.Length != payload.Length || memory.Length != payload.Length || record.TransactionId != id)
        {
            throw new InvalidOperationException("The wrong transaction arrived.");
        }
        pair.Inbound.Free(record);
        pair.Outbound.DrainFrees();
    }
}
