using System.Globalization;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// The client of the server's reply-room test (<c>tests/PageRange.Tests/Server/ServerReplyRoomTests.cs</c>).
/// <c>server-stop-reading &lt;name&gt; &lt;calls&gt;</c>: connects (prints <c>connected: ok</c>), starts that many echo
/// calls of 128 KiB at once and never disposes a reply, so its region fills and stays full (prints <c>stalled: sent</c>);
/// then waits until the server closes the connection and prints <c>closed: &lt;the server's reason&gt;</c>.
/// </summary>
internal static class ReplyRoomScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(120);

    public static int StopReading(string[] args)
    {
        string name = args[1];
        int calls = int.Parse(args[2], CultureInfo.InvariantCulture);
        var options = new PageRangeOptions { RegionSize = 1L << 20, ConnectTimeout = TimeSpan.FromSeconds(60), CallTimeout = s_bound };
        PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, options).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult();
        Console.WriteLine("connected: ok");
        byte[] request = new byte[128 << 10];
        new Random(11).NextBytes(request);
        // Kept, never disposed: each reply holds its buffer in this process's region.
        var pending = new List<Task<Transaction>>(calls);
        for (int i = 0; i < calls; i++)
        {
            pending.Add(connection.CallAsync(ServerLoadPayload.EchoCode, request).AsTask());
        }
        Console.WriteLine("stalled: sent");
        string? reason = null;
        foreach (Task<Transaction> call in pending)
        {
            try
            {
                call.WaitAsync(s_bound).GetAwaiter().GetResult();
            }
            catch (PeerDiedException died)
            {
                reason ??= died.PeerReason;
            }
            catch (PageRangeException)
            {
                // A reply the server failed (no room for it): the call ends, the connection's end comes after.
            }
        }
        // A call that reaches the server after it decided to close this client but before its session stopped
        // receiving is dropped unanswered (RemoteCallException): the close follows, so call again until it is seen.
        var deadline = DateTime.UtcNow + s_bound;
        while (reason is null && DateTime.UtcNow < deadline)
        {
            try
            {
                connection.CallAsync(ServerLoadPayload.EchoCode, request).AsTask().WaitAsync(s_bound).GetAwaiter().GetResult().Dispose();
                break;
            }
            catch (PeerDiedException died)
            {
                reason = died.PeerReason;
            }
            catch (RemoteCallException)
            {
                Thread.Sleep(10);
            }
        }
        Console.WriteLine($"closed: {reason ?? "(none)"}");
        // Exits without freeing: the process's end releases the rest.
        return 0;
    }
}
