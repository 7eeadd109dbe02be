using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using PageRange.Transport;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// Creates each transport's measuring end before the peer starts, and the peer's end from the spec the host passes
/// on its command line (<c>kind:mode:address</c>).
/// </summary>
internal static class TransportSetup
{
    /// <summary>Every transport the harness knows, in the order of the results.</summary>
    public static readonly string[] All =
    [
        "floor",
        "pagerange-raw:busy-spin", "pagerange-raw:spin-then-park", "pagerange-raw:park",
        // The peer receives with ReceiveBatch: its oneway lane; park left out (a batch receiver is one that keeps up).
        "pagerange-batch:busy-spin", "pagerange-batch:spin-then-park",
        "pagerange-msgpack:busy-spin", "pagerange-msgpack:spin-then-park", "pagerange-msgpack:park",
        // A 64-byte struct (SendOnewayStruct, ReadStruct): measured at 64 B only.
        "pagerange-struct:busy-spin", "pagerange-struct:spin-then-park", "pagerange-struct:park",
        "unix-socket", "anon-pipe", "named-pipe", "tcp",
    ];

    /// <summary>A measuring end waiting for the peer: its spec for the peer, then its acceptance.</summary>
    internal sealed class Pending(string peerSpec, Func<CancellationToken, Task<IHostTransport>> accept, Action? afterPeerStarted = null)
    {
        public string PeerSpec => peerSpec;

        public Task<IHostTransport> AcceptAsync(CancellationToken cancellationToken) => accept(cancellationToken);

        /// <summary>Runs once the peer has inherited what it needed (the anonymous pipes' ends).</summary>
        public void AfterPeerStarted() => afterPeerStarted?.Invoke();
    }

    public static PageRangeOptions PageRangeOptionsFor(WaitStrategy wait, long regionSize) => new()
    {
        WaitStrategy = wait,
        RegionSize = regionSize,
        // A stream of large oneway messages may wait a while for the peer's frees on a loaded machine.
        RegionFullTimeout = TimeSpan.FromSeconds(30),
    };

    /// <summary>Creates the measuring end of <paramref name="transport"/> (<c>kind</c> or <c>kind:mode</c>).</summary>
    public static Pending CreateHost(string transport, string runId, int index, long regionSize)
    {
        string[] parts = transport.Split(':');
        string kind = parts[0];
        switch (kind)
        {
            case "pagerange-raw" or "pagerange-batch" or "pagerange-msgpack" or "pagerange-struct":
            {
                WaitStrategy wait = WaitStrategyNames.Parse(parts.Length > 1 ? parts[1] : "spin-then-park");
                string name = $"bench-{runId}-{index}";
                PageRangeListener listener = PageRangeListener.Listen(name, PageRangeOptionsFor(wait, regionSize));
                return new Pending($"{kind}:{WaitStrategyNames.Of(wait)}:{name}", async cancellationToken =>
                {
                    PageRangeConnection connection = await listener.AcceptAsync(cancellationToken);
                    return new PageRangeHostTransport(connection, listener, kind, wait);
                });
            }
            case "floor":
            {
                FloorChannel channel = FloorChannel.CreateHost(regionSize);
                return new Pending($"floor:busy-spin:{channel.PeerAddress}", _ => Task.FromResult<IHostTransport>(new FloorHostTransport(channel)));
            }
            case "unix-socket":
            {
                string path = Path.Combine(Path.GetTempPath(), $"pagerange-bench-{runId}-{index}.sock");
                File.Delete(path);
                var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                listener.Bind(new UnixDomainSocketEndPoint(path));
                listener.Listen(1);
                return new Pending($"unix-socket:blocking:{path}", async cancellationToken =>
                {
                    Socket socket = await listener.AcceptAsync(cancellationToken);
                    File.Delete(path);
                    return new StreamHostTransport("unix-socket", new FrameChannel(new SocketByteStream(socket)), listener);
                });
            }
            case "tcp":
            {
                var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                listener.Listen(1);
                int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
                return new Pending($"tcp:blocking:{port}", async cancellationToken =>
                {
                    Socket socket = await listener.AcceptAsync(cancellationToken);
                    // Nagle would hold back each small ping for the previous one's ACK: off, as every RPC stack does.
                    socket.NoDelay = true;
                    return new StreamHostTransport("tcp", new FrameChannel(new SocketByteStream(socket)), listener);
                });
            }
            case "named-pipe":
            {
                string name = $"pagerange-bench-{runId}-{index}";
                var server = new NamedPipeServerStream(name, PipeDirection.InOut, 1, PipeTransmissionMode.Byte, PipeOptions.None);
                return new Pending($"named-pipe:blocking:{name}", async cancellationToken =>
                {
                    await server.WaitForConnectionAsync(cancellationToken);
                    return new StreamHostTransport("named-pipe", new FrameChannel(new PipeByteStream(server, server)), null);
                });
            }
            case "anon-pipe":
            {
                var toPeer = new AnonymousPipeServerStream(PipeDirection.Out, HandleInheritability.Inheritable);
                var fromPeer = new AnonymousPipeServerStream(PipeDirection.In, HandleInheritability.Inheritable);
                return new Pending(
                    $"anon-pipe:blocking:{toPeer.GetClientHandleAsString()},{fromPeer.GetClientHandleAsString()}",
                    _ => Task.FromResult<IHostTransport>(
                        new StreamHostTransport("anon-pipe", new FrameChannel(new PipeByteStream(fromPeer, toPeer)), null)),
                    () =>
                    {
                        // The peer holds its ends now; ours must go, or an end of stream would never be seen.
                        toPeer.DisposeLocalCopyOfClientHandle();
                        fromPeer.DisposeLocalCopyOfClientHandle();
                    });
            }
            default:
                throw new ArgumentException($"Unknown transport '{transport}'. Known: {string.Join(", ", All)}.", nameof(transport));
        }
    }

    /// <summary>Connects the peer's end of the transport the host described in <paramref name="spec"/>.</summary>
    public static IPeerTransport ConnectPeer(string spec, long regionSize)
    {
        string[] parts = spec.Split(':', 3);
        if (parts.Length != 3)
        {
            throw new ArgumentException($"A peer transport spec is kind:mode:address, not '{spec}'.", nameof(spec));
        }
        (string kind, string mode, string address) = (parts[0], parts[1], parts[2]);
        switch (kind)
        {
            case "pagerange-raw" or "pagerange-batch" or "pagerange-msgpack" or "pagerange-struct":
            {
                PageRangeOptions options = PageRangeOptionsFor(WaitStrategyNames.Parse(mode), regionSize);
                PageRangeConnection connection = PageRangeConnection.ConnectAsync(address, options).AsTask().GetAwaiter().GetResult();
                string? stateFile = Environment.GetEnvironmentVariable(PeerProcess.StateDirectoryVariable) is { Length: > 0 } stateDirectory
                    ? CrossProcessOptions.StateFile(stateDirectory, kind, mode, "peer")
                    : null;
                return new PageRangePeerTransport(
                    connection, messagePack: kind == "pagerange-msgpack", receiveBatch: kind == "pagerange-batch", asStruct: kind == "pagerange-struct", stateFile);
            }
            case "floor":
                return new FloorPeerTransport(FloorChannel.OpenPeer(address, regionSize));
            case "unix-socket":
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Connect(new UnixDomainSocketEndPoint(address));
                return new StreamPeerTransport(new FrameChannel(new SocketByteStream(socket)));
            }
            case "tcp":
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                socket.Connect(new IPEndPoint(IPAddress.Loopback, int.Parse(address, System.Globalization.CultureInfo.InvariantCulture)));
                return new StreamPeerTransport(new FrameChannel(new SocketByteStream(socket)));
            }
            case "named-pipe":
            {
                var client = new NamedPipeClientStream(".", address, PipeDirection.InOut, PipeOptions.None);
                client.Connect(TimeSpan.FromSeconds(30));
                return new StreamPeerTransport(new FrameChannel(new PipeByteStream(client, client)));
            }
            case "anon-pipe":
            {
                string[] handles = address.Split(',');
                var input = new AnonymousPipeClientStream(PipeDirection.In, handles[0]);
                var output = new AnonymousPipeClientStream(PipeDirection.Out, handles[1]);
                return new StreamPeerTransport(new FrameChannel(new PipeByteStream(input, output)));
            }
            default:
                throw new ArgumentException($"Unknown peer transport '{kind}'.", nameof(spec));
        }
    }
}
