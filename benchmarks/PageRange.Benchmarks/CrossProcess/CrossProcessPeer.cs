using System.Globalization;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// The second process: connects every transport the host listed, then serves one at a time as the host commands on
/// standard input (<c>serve N</c>, <c>quit</c>). Between sessions it blocks on that line, so an idle busy-spin
/// transport never spins and never steals a core from the one being measured.
/// </summary>
internal static class CrossProcessPeer
{
    /// <summary><c>--peer --region-size BYTES spec...</c></summary>
    public static int Run(string[] args)
    {
        long regionSize = long.Parse(args[1], CultureInfo.InvariantCulture);
        var transports = new List<IPeerTransport>();
        try
        {
            foreach (string spec in args[2..])
            {
                transports.Add(TransportSetup.ConnectPeer(spec, regionSize));
            }
            Console.Out.WriteLine("connected");
            Console.Out.Flush();
            while (Console.In.ReadLine() is { } line)
            {
                string[] words = line.Split(' ');
                switch (words[0])
                {
                    case "serve":
                        transports[int.Parse(words[1], CultureInfo.InvariantCulture)].Serve();
                        break;
                    case "quit":
                        return 0;
                    default:
                        throw new InvalidOperationException($"Unknown command '{line}'.");
                }
            }
            return 0;
        }
        catch (Exception error) when (error is IOException or PageRangeException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            Console.Error.WriteLine($"peer: {error}");
            return 1;
        }
        finally
        {
            foreach (IPeerTransport transport in transports)
            {
                transport.Dispose();
            }
        }
    }
}
