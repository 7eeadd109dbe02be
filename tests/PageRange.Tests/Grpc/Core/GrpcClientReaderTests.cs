using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using static PageRange.Tests.Infrastructure.Poll;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// The client's frame reader runs only while a stream is open (a pending receive would make every blocking unary call
/// wait for the connection's background thread to hand it its reply): unary calls start none, a stream starts one, the
/// last stream's end stops it, and streams opened and ended from many threads at once, among unary calls, each get
/// every message in order.
/// </summary>
public sealed class GrpcClientReaderTests
{
    [Fact]
    public async Task UnaryCalls_StartNoReader_AStreamStartsOne_ItsEndStopsIt()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        Assert.Equal(2, client.Unary(new CoreMessage { Number = 1 }).Number);
        Assert.Equal(3, (await client.UnaryAsync(new CoreMessage { Number = 2 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        Assert.False(connection.IsReading);
        Assert.Equal(0, connection.ReaderStarts);

        for (int stream = 1; stream <= 3; stream++)
        {
            Assert.Equal(Enumerable.Range(0, 20), await ReadStreamAsync(client, 20));
            await ReaderStoppedAndUnaryStillWorksAsync(connection, client);
            Assert.Equal(stream, connection.ReaderStarts);
        }
    }

    [Fact]
    public async Task StreamCancelledWhileTheServerWrites_TheNextStreamReadsItsOwnMessagesOnly()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        GrpcClientConnection connection = await grpc.ConnectionAsync();

        using (var cancel = new CancellationTokenSource())
        {
            // A long stream of 1 KiB messages, cancelled after a few: the server still has frames on the way.
            using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = 100_000, Number = 1024 }, cancellationToken: cancel.Token);
            for (int i = 0; i < 10; i++)
            {
                Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
                Assert.Equal(i, call.ResponseStream.Current.Number);
            }
            await cancel.CancelAsync();
            RpcException cancelled = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
                {
                }
            });
            Assert.Equal(StatusCode.Cancelled, cancelled.StatusCode);
        }
        await WaitUntilAsync(() => !connection.IsReading, "the reader stopped");

        // The next stream right after the cancelled one: nothing of what that one left in flight may reach it.
        Assert.Equal(Enumerable.Range(0, 300), await ReadStreamAsync(client, 300));
        await ReaderStoppedAndUnaryStillWorksAsync(connection, client);
    }

    [Fact]
    public async Task StreamsAndUnaryCalls_FromManyThreads_EveryStreamGetsEveryMessageInOrder()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        GrpcClientConnection connection = await grpc.ConnectionAsync();

        // Streams start and end all the time, so the reader is stopped and started again while others register: a
        // stream left without a reader would never get its messages and time out here.
        Task[] workers = [.. Enumerable.Range(0, 6).Select(worker => Task.Run(async () =>
        {
            var random = new Random(worker);
            for (int i = 0; i < 40; i++)
            {
                switch (random.Next(3))
                {
                    case 0:
                        int count = random.Next(1, 40);
                        Assert.Equal(Enumerable.Range(0, count), await ReadStreamAsync(client, count));
                        break;
                    case 1:
                        Assert.Equal(i + 1, client.Unary(new CoreMessage { Number = i }).Number);
                        break;
                    default:
                        Assert.Equal(i + 1, (await client.UnaryAsync(new CoreMessage { Number = i })).Number);
                        break;
                }
            }
        }))];
        await Task.WhenAll(workers).WaitAsync(TestTimeouts.Long);

        await ReaderStoppedAndUnaryStillWorksAsync(connection, client);
        Assert.True(connection.ReaderStarts >= 1);
    }

    /// <summary>Once no stream is open the reader stops, and a blocking unary call still gets its reply on the same connection.</summary>
    private static async Task ReaderStoppedAndUnaryStillWorksAsync(GrpcClientConnection connection, CoreTest.CoreTestClient client)
    {
        await WaitUntilAsync(() => !connection.IsReading, "the reader stopped");
        Assert.Equal(0, connection.OpenStreams);
        Assert.Equal(2, client.Unary(new CoreMessage { Number = 1 }).Number);
        Assert.True(connection.IsAlive);
    }

    private static async Task<List<int>> ReadStreamAsync(CoreTest.CoreTestClient client, int count)
    {
        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = count, Number = 8, Data = ByteString.Empty });
        var numbers = new List<int>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            numbers.Add((int)call.ResponseStream.Current.Number);
        }
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        return numbers;
    }
}
