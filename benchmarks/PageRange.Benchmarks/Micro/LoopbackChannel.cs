using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Benchmarks.Micro;

/// <summary>The micro benchmarks' channel: both of its ends in this process, the writer on a second mapping of the region.</summary>
internal static class LoopbackChannel
{
    /// <summary>
    /// The writing end of <paramref name="inbound"/>: its region mapped again, as the peer process maps it, with a
    /// private shrinker that never scans, so freed pages stay backed as they would between two runs of the real one.
    /// </summary>
    internal static OutboundChannel WriterFor(InboundChannel inbound, ChannelOptions options)
    {
        SharedRegion view = SharedRegion.Open(Interop.Dup(inbound.Region.Handle), inbound.Region.Size, inbound.Region.Size);
        return new OutboundChannel(view, options, new Shrinker());
    }
}
