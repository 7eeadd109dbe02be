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
        long pings = 0;
        var connectionOptions = new PageRangeOptions { WaitStrategy = options.WaitStrategy };
        // Listening before connecting: once the host has accepted us, the socket is ready for its comparison phase.
        using SocketPeer socketPeer = SocketPeer.Start(name);
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, connectionOptions).AsTask().GetAwaiter().GetResult();
        long messages = 0;
        long bytes = 0;
        ulong checksum = 0;
        while (true)
        {
            Transaction transaction;
            try
            {
                transaction = connection.Receive();
            }
            catch (PeerDiedException)
            {
                return 0;
            }
            using (transaction)
            {
                switch (transaction.Code)
                {
                    case Codes.Ping:
                        if (++pings == options.PeerExitAfter)
                        {
                            // A crash in the middle of a call: no reply, no goodbye.
                            Environment.Exit(FaultExitCode);
                        }
                        transaction.Reply(new Pong(transaction.Deserialize<Ping>().Seq));
                        break;
                    case Codes.Stream:
                        messages++;
                        bytes += transaction.Length;
                        checksum += Checksum.Of(transaction.Payload);
                        break;
                    case Codes.StreamEnd:
                        connection.SendOneway(new StreamReport(messages, bytes, checksum), Codes.StreamEnd);
                        break;
                    case Codes.Quit:
                        return 0;
                    default:
                        break;
                }
            }
        }
    }
}
