using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// A peer built from the transport's parts instead of a <see cref="PageRangeConnection"/>: it holds the victim's region
/// read-write and may write anything into it, besides sending and freeing honestly through its own channels.
/// </summary>
internal sealed class RawPeer : IAsyncDisposable
{
    private RawPeer(HandshakeResult handshake, InboundChannel inbound, OutboundChannel outbound)
    {
        Handshake = handshake;
        Inbound = inbound;
        Outbound = outbound;
    }

    public HandshakeResult Handshake { get; }

    /// <summary>The region the victim writes into (replies, and the free ring the victim reads as writer).</summary>
    public InboundChannel Inbound { get; }

    /// <summary>Writes into the victim's region.</summary>
    public OutboundChannel Outbound { get; }

    public static async Task<RawPeer> ConnectAsync(string name, PageRangeOptions options)
    {
        InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
        HandshakeResult handshake;
        try
        {
            handshake = await ControlHandshake.ConnectAsync(name, options, inbound.Region, CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);
        }
        catch
        {
            inbound.Dispose();
            throw;
        }
        handshake.Control.StartWatching();
        var outbound = new OutboundChannel(handshake.PeerRegion, new ChannelOptions
        {
            RegionSize = handshake.PeerRegion.Size,
            TxRingCapacity = handshake.PeerHello.TransactionRingCapacity,
            FreeRingCapacity = handshake.PeerHello.FreeRingCapacity,
        });
        return new RawPeer(handshake, inbound, outbound);
    }

    /// <summary>Writes <paramref name="bytes"/> at <paramref name="offset"/> of the victim's region.</summary>
    public void Scribble(long offset, ReadOnlySpan<byte> bytes) => bytes.CopyTo(Handshake.PeerRegion.GetSpan(offset, bytes.Length));

    public async ValueTask DisposeAsync()
    {
        Outbound.Dispose();
        await Handshake.DisposeAsync();
        Inbound.Dispose();
    }
}
