using System.Buffers.Binary;
using System.Collections.Concurrent;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Call chains across two real processes: the TestHost's <c>nested-serve</c> scenario serves with one thread, this
/// side calls with one thread, so the chain works only if each side's waiting thread runs the nested calls.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class ConnectionNestedCallCrossProcessTests(ITestOutputHelper output)
{
    private static PageRangeOptions Options() => new() { WaitStrategy = WaitStrategy.SpinThenPark, ParkTimeout = TimeSpan.FromMilliseconds(50) };

    private static async Task<(TestHostProcess Host, PageRangeConnection Connection)> StartAsync(ITestOutputHelper output, PageRangeOptions options, params string[] flags)
    {
        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
        TestHostProcess host = TestHostProcess.Start(output, "nested-serve", [name, .. flags]);
        try
        {
            PageRangeConnection connection = await accepting.WaitAsync(TestTimeouts.Long);
            host.ReadUntil("connected: ");
            return (host, connection);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    private static byte[] Count(int value)
    {
        byte[] payload = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(payload, value);
        return payload;
    }

    /// <summary>Calls on a thread of its own (a synchronous waiter, so it can run nested calls) and returns what happened.</summary>
    private static (int Answer, Exception? Failure, int Thread) CallOnOneThread(PageRangeConnection connection, int count)
    {
        int answer = -1;
        Exception? failure = null;
        var caller = new Thread(() =>
        {
            try
            {
                using Transaction reply = connection.Call(7, Count(count), TestTimeouts.Long);
                answer = BinaryPrimitives.ReadInt32LittleEndian(reply.Payload);
            }
            catch (Exception error)
            {
                failure = error;
            }
        })
        { IsBackground = true, Name = "caller" };
        caller.Start();
        Assert.True(caller.Join(TestTimeouts.Long), "the chain deadlocked");
        return (answer, failure, caller.ManagedThreadId);
    }

    [Fact]
    public async Task Call_ChainABAB_Depth8_OneThreadPerSide()
    {
        (TestHostProcess host, PageRangeConnection connection) = await StartAsync(output, Options());
        using (host)
        {
            var visits = new ConcurrentQueue<ConnectionNestedCallTests.Visit>();
            connection.SetNestedCallHandler(call => ConnectionNestedCallTests.PingPong(connection, call, "test", visits));

            (int answer, Exception? failure, int thread) = CallOnOneThread(connection, 8);

            Assert.Null(failure);
            Assert.Equal(8, answer);
            Assert.Equal([1, 3, 5, 7], visits.Select(v => v.Depth));
            Assert.All(visits, v => Assert.Equal(thread, v.Thread));
            await connection.DisposeAsync();
            Assert.Equal("0 2 4 6 8", host.ReadUntil("depths: "));
            Assert.Equal(0, host.WaitForExit());
        }
    }

    [Fact]
    public async Task Call_ChainOverTheHostsDepthLimit_ResourceExhaustedReachesTheCaller()
    {
        (TestHostProcess host, PageRangeConnection connection) = await StartAsync(output, Options(), "--max-depth", "4");
        using (host)
        {
            var visits = new ConcurrentQueue<ConnectionNestedCallTests.Visit>();
            connection.SetNestedCallHandler(call => ConnectionNestedCallTests.PingPong(connection, call, "test", visits));

            (_, Exception? failure, _) = CallOnOneThread(connection, 12);

            var error = Assert.IsType<RemoteCallException>(failure);
            output.WriteLine(error.Message);
            Assert.Equal(CallStatus.ResourceExhausted, error.Status);
            Assert.Contains("call depth limit 4 exceeded", error.Message, StringComparison.Ordinal);
            Assert.True(connection.IsPeerAlive);
            await connection.DisposeAsync();
            // The host never handled a call deeper than its limit.
            Assert.Equal("0 2 4", host.ReadUntil("depths: "));
            Assert.Equal(0, host.WaitForExit());
        }
    }

    [Fact]
    public async Task Call_HostCallsBackInANewChain_GoesToOurReceiverNotTheWaitingThread()
    {
        (TestHostProcess host, PageRangeConnection connection) = await StartAsync(output, Options());
        using (host)
        {
            var nested = new ConcurrentQueue<int>();
            connection.SetNestedCallHandler(call => { nested.Enqueue(call.Depth); call.Reply([]); });
            var received = new ConcurrentQueue<(int Thread, uint Code)>();
            var receiver = new Thread(() =>
            {
                using Transaction call = connection.Receive();
                received.Enqueue((Environment.CurrentManagedThreadId, call.Code));
                call.Reply([]);
            })
            { IsBackground = true, Name = "receiver" };
            receiver.Start();

            connection.Call(9, [], TestTimeouts.Long).Dispose();

            Assert.True(receiver.Join(TestTimeouts.Long));
            Assert.Empty(nested);
            Assert.Equal((receiver.ManagedThreadId, 2u), Assert.Single(received));
            await connection.DisposeAsync();
            Assert.Equal(0, host.WaitForExit());
        }
    }
}
