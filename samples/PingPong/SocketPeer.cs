using System.Net.Sockets;

namespace PingPong;

/// <summary>
/// The peer's Unix-socket server for the comparison: one connection, served on a thread of its own with blocking
/// reads, answering each <see cref="Ping"/> with the same <see cref="Pong"/> PageRange's peer sends.
/// </summary>
internal sealed class SocketPeer : IDisposable
{
    private readonly Socket _listener;

    private SocketPeer(Socket listener) => _listener = listener;

    /// <summary>The socket's name in the abstract namespace (no file), derived from the PageRange listener's.</summary>
    public static UnixDomainSocketEndPoint EndPointFor(string name) => new($"\0{name}-socket");

    /// <summary>Binds and listens now (before the PageRange connection, so the host finds it ready), then serves in the background.</summary>
    public static SocketPeer Start(string name)
    {
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(EndPointFor(name));
            listener.Listen(1);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        var peer = new SocketPeer(listener);
        // A background thread: a host run with --no-socket never connects, and the process must still exit on Quit.
        new Thread(peer.Serve) { IsBackground = true, Name = "socket peer" }.Start();
        return peer;
    }

    public void Dispose() => _listener.Dispose();

    private void Serve()
    {
        try
        {
            using Socket socket = _listener.Accept();
            var framing = new SocketFraming(socket);
            while (framing.TryReceive(out Ping ping))
            {
                framing.Send(new Pong(ping.Seq));
            }
        }
        catch (Exception error) when (error is SocketException or ObjectDisposedException or EndOfStreamException)
        {
            // The host went away or the peer is quitting: nothing more to serve.
        }
    }
}
