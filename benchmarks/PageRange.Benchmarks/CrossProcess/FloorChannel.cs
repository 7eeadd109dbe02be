using PageRange.Memory;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The <c>floor</c> transport's shared memory: one memfd holding a ring each way (host to peer, peer to host). The host
/// creates it; the peer opens the same memfd through <c>/proc/&lt;host&gt;/fd/&lt;n&gt;</c>, so nothing but the
/// mapping is shared and no library protocol runs.
/// </summary>
internal sealed class FloorChannel : IDisposable
{
    // The control words of both rings fill the first page; the rings follow, each the size of a PageRange region.
    private const long ControlBytes = 4096;

    private FloorChannel(SharedRegion region, long capacity, bool isHost)
    {
        Region = region;
        var toPeer = new FloorRing(region, control: 0, ring: ControlBytes, capacity);
        var toHost = new FloorRing(region, control: 128, ring: ControlBytes + capacity, capacity);
        Outbound = isHost ? toPeer : toHost;
        Inbound = isHost ? toHost : toPeer;
    }

    public SharedRegion Region { get; }

    public FloorRing Outbound { get; }

    public FloorRing Inbound { get; }

    /// <summary>The host's end; <see cref="PeerAddress"/> is what the peer needs to open it.</summary>
    public static FloorChannel CreateHost(long capacity) =>
        new(SharedRegion.Create("pagerange-bench-floor", RegionBytes(capacity)), capacity, isHost: true);

    /// <summary><c>pid/fd/size</c>: where the peer finds this memfd.</summary>
    public string PeerAddress => FormattableString.Invariant($"{Environment.ProcessId}/{Region.Handle.Fd}/{Region.Size}");

    /// <summary>The peer's end, from the host's <see cref="PeerAddress"/>.</summary>
    public static FloorChannel OpenPeer(string address, long capacity)
    {
        string[] parts = address.Split('/');
        long size = long.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
        if (size != RegionBytes(capacity))
        {
            throw new InvalidOperationException($"The floor region is {size} bytes; {RegionBytes(capacity)} were expected.");
        }
        SafeMemfdHandle fd = Interop.OpenReadWrite($"/proc/{parts[0]}/fd/{parts[1]}");
        return new FloorChannel(SharedRegion.Open(fd, size, size), capacity, isHost: false);
    }

    private static long RegionBytes(long capacity) => ControlBytes + 2 * capacity;

    public void Dispose() => Region.Dispose();
}
