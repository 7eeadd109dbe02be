using System.Buffers.Binary;
using System.Globalization;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Call chains across processes: <c>nested-serve &lt;name&gt; [--max-depth N]</c> connects to the test's listener and
/// serves it with ONE thread (this one), with a nested-call handler set, so a chain that comes back to it while it
/// waits in its own nested call is served only if it runs on the waiting thread. Codes:
/// <list type="bullet">
/// <item>7 (ping-pong): a call carrying n &gt; 0 calls the caller back in its chain with n - 1 and replies with that
/// answer plus one; n = 0 replies 0. A depth error from the other side is passed on with its status.</item>
/// <item>9 (new chain): before replying, calls the caller with code 2 in a NEW chain (not nested).</item>
/// </list>
/// Prints <c>connected: &lt;pid&gt;</c>, then <c>depths: d0 d1 ...</c> of the calls it handled when the peer goes away.
/// </summary>
internal static class NestedScenarios
{
    public static int Serve(string[] args)
    {
        string name = args[1];
        var options = new PageRangeOptions { WaitStrategy = WaitStrategy.SpinThenPark, ParkTimeout = TimeSpan.FromMilliseconds(50) };
        for (int i = 2; i + 1 < args.Length; i += 2)
        {
            if (args[i] == "--max-depth")
            {
                options.MaxCallDepth = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
            }
        }
        using var connectTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using PageRangeConnection connection = PageRangeConnection.ConnectAsync(name, options, connectTimeout.Token).AsTask().GetAwaiter().GetResult();
        var depths = new List<int>();
        connection.SetNestedCallHandler(call => Handle(connection, call, depths));
        Console.WriteLine($"connected: {Environment.ProcessId}");
        try
        {
            while (true)
            {
                Transaction call = connection.Receive();
                try
                {
                    Handle(connection, call, depths);
                }
                finally
                {
                    call.Dispose();
                }
            }
        }
        catch (PeerDiedException)
        {
            // The test closed its end: done.
        }
        Console.WriteLine($"depths: {string.Join(' ', depths)}");
        return 0;
    }

    private static void Handle(PageRangeConnection connection, Transaction call, List<int> depths)
    {
        depths.Add(call.Depth);
        if (call.Code == 9)
        {
            connection.Call(2, [], TimeSpan.FromSeconds(60)).Dispose();
            call.Reply([]);
            return;
        }
        int remaining = BinaryPrimitives.ReadInt32LittleEndian(call.Payload);
        int answer = 0;
        if (remaining > 0)
        {
            byte[] request = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(request, remaining - 1);
            try
            {
                using Transaction reply = connection.Call(call.Code, request, call.NestedChain, TimeSpan.FromSeconds(60));
                answer = BinaryPrimitives.ReadInt32LittleEndian(reply.Payload) + 1;
            }
            catch (RemoteCallException error)
            {
                call.ReplyError(error.Status, error.Message);
                return;
            }
            catch (PageRangeStatusException error)
            {
                call.ReplyError(error.Status, error.Message);
                return;
            }
        }
        byte[] payload = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(payload, answer);
        call.Reply(payload);
    }
}
