using System.Runtime;
using PageRange;
using PageRange.Serialization;
using PageRange.Transport;

namespace PingPong;

/// <summary>
/// The answering side: replies to pings over PageRange and over a Unix socket, counts the stream, exits on Quit or when
/// the host is gone.
/// </summary>
internal static class Peer
{
    /// <summary>The exit code of a peer that quits on purpose (<c>--peer-exit-after</c>), to test the host's handling.</summary>
    public const int FaultExitCode = 17;

    public static int Run(string name, SampleOptions options)
    {
        if (options.PeerExitAfter == 0)
        {
            return FaultExitCode;
        }
        var connectionOptions = new PageRangeOptions { WaitStrategy = options.WaitStrategy };
        // Listening before connecting: once the host has accepted us, the socket is ready for its comparison phase.
        using SocketPeer socketPeer = SocketPeer.Start(name);
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, connectionOptions).AsTask().GetAwaiter().GetResult();
        var state = new PeerState(connection, options.PeerExitAfter);
        try
        {
            // ReceiveBatch hands every transaction ready to the handler on this thread, in order, and disposes each
            // when it returns; a stream of small oneways (up to 2 KiB) goes through its lane, a fraction of Receive's
            // work per message (this sample's 4 KiB stream is handled one at a time, as Receive would).
            while (!state.Quit)
            {
                connection.ReceiveBatch(PeerState.Handle, state);
            }
        }
        catch (PeerDiedException)
        {
            // The host is gone.
        }
        return 0;
    }

    /// <summary>What the peer counts, and its handler for one transaction.</summary>
    private sealed class PeerState(PageRangeConnection connection, long? exitAfter)
    {
        public static readonly TransactionHandler<PeerState> Handle = static (state, in transaction) => state.Serve(transaction);

        private long _pings;
        private long _messages;
        private long _bytes;
        private ulong _checksum;

        public bool Quit { get; private set; }

        private void Serve(in Transaction transaction)
        {
            switch (transaction.Code)
            {
                case Codes.Ping:
                    if (++_pings == exitAfter)
                    {
                        // A crash in the middle of a call: no reply, no goodbye.
                        Environment.Exit(FaultExitCode);
                    }
                    transaction.Reply(new Pong(transaction.Deserialize<Ping>().Seq));
                    break;
                case Codes.Stream:
                    _messages++;
                    _bytes += transaction.Length;
                    _checksum += Checksum.Of(transaction.Payload);
                    break;
                case Codes.StreamEnd:
                    connection.SendOneway(new StreamReport(_messages, _bytes, _checksum), Codes.StreamEnd);
                    // Each stream counts on its own: the warm-up's short streams, then the measured one.
                    (_messages, _bytes, _checksum) = (0, 0, 0);
                    break;
                case Codes.CompiledMethods:
                    transaction.Reply(new JitReport(JitInfo.GetCompiledMethodCount()));
                    break;
                case Codes.Quit:
                    Quit = true;
                    break;
                default:
                    break;
            }
        }
    }
}
