using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary><see cref="PageRangeOptions.ClearBuffersOnFree"/> reaches the connection's outbound channel and zeroes what the peer frees.</summary>
public sealed class ChannelClearBuffersOnFreeTests
{
    [Fact]
    public async Task ClearBuffersOnFree_OnTheSender_PeerFreedPayloadReadsAsZeros()
    {
        PageRangeOptions options = ConnectionPair.DefaultOptions();
        options.ClearBuffersOnFree = true;
        Assert.True(options.Clone().ClearBuffersOnFree);
        await using ConnectionPair pair = await ConnectionPair.CreateAsync(options);
        Assert.True(pair.Client.Outbound.ClearBuffersOnFree);

        pair.Client.SendOneway(5, Enumerable.Repeat((byte)0xEE, 3000).ToArray());
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        Transaction transaction = pair.Server.Receive(timeout.Token);
        ReadOnlySpan<byte> payload = transaction.Payload;
        Assert.Equal(0xEE, payload[2999]);
        transaction.Dispose();
        // The free is on the ring now; draining it (here, or by the connection's own housekeeping, which holds the same
        // lock) zeroes the buffer before it is given back.
        pair.Client.Outbound.DrainFrees();

        Assert.True(payload.IndexOfAnyExcept((byte)0) < 0, "the freed payload reads as zeros in the receiver's region");
    }

    [Fact]
    public void ClearBuffersOnFree_Default_IsOff() => Assert.False(new PageRangeOptions().ClearBuffersOnFree);
}
