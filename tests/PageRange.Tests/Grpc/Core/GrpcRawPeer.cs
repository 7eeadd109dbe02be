using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>What the hostile gRPC tests share: a raw PageRange connection to a gRPC server, and the checks on the victim.</summary>
internal static class GrpcRawPeer
{
    /// <summary>A plain connection to <paramref name="server"/>, which writes frames by hand.</summary>
    public static Task<PageRangeConnection> ConnectAsync(GrpcTestServer server) =>
        PageRangeConnection.ConnectAsync(server.Name, GrpcTestServer.ConnectionOptions()).AsTask().WaitAsync(TestTimeouts.Long);

    /// <summary>
    /// A raw server on <paramref name="listener"/>: accepts one client, answers its first call with <paramref name="reply"/>
    /// as it is (a gRPC reply made by hand), then waits until the client lets the connection go.
    /// </summary>
    /// <returns>Whether the client was still alive when the connection ended (false: the client closed it).</returns>
    public static Task<bool> AnswerFirstCallAsync(PageRangeListener listener, byte[] reply) => Task.Run(async () =>
    {
        await using PageRangeConnection connection = await listener.AcceptAsync();
        using (Transaction call = await connection.ReceiveAsync())
        {
            call.Reply(reply);
        }
        try
        {
            await Task.Delay(Timeout.Infinite, connection.PeerDied);
        }
        catch (OperationCanceledException)
        {
            // The client let the connection go.
        }
        return connection.IsPeerAlive;
    });

    /// <summary>The next client the server lets go, with why.</summary>
    public static Task<ClientDisconnectedEventArgs> NextDisconnect(PageRangeServer server)
    {
        var ended = new TaskCompletionSource<ClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.ClientDisconnected += (_, args) => ended.TrySetResult(args);
        return ended.Task;
    }

    /// <summary>Waits until no descriptor or mapping of this server's connections' regions is left in the process.</summary>
    public static async Task AssertRegionsGoneAsync(string name)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        (int Descriptors, int Mappings) left;
        while ((left = FaultResources.Naming(name)) != (0, 0) && waited.Elapsed < TestTimeouts.Long)
        {
            await Task.Delay(50);
        }
        Assert.Equal((0, 0), left);
    }
}
