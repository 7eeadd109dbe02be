using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>Server, client and duplex streaming of a generated client against a mapped service, in one process.</summary>
public sealed class GrpcStreamingTests
{
    [Fact]
    public async Task ServerStream_ManyMessages_AllArriveInOrderThenOkAndTrailers()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "headers", Count = 500, Number = 100 });
        Metadata headers = await call.ResponseHeadersAsync.WaitAsync(TestTimeouts.Long);
        var numbers = new List<long>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(100, call.ResponseStream.Current.Data.Length);
            numbers.Add(call.ResponseStream.Current.Number);
        }

        Assert.Equal("s1", headers.GetValue("stream-h"));
        Assert.Equal(Enumerable.Range(0, 500).Select(static i => (long)i), numbers);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.Equal("500", call.GetTrailers().GetValue("sent"));
    }

    [Fact]
    public async Task ServerStream_HandlerFailsAfterMessages_ReaderGetsTheStatus()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "fail-after", Count = 3 });
        RpcException error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
            }
        });

        Assert.Equal(StatusCode.Aborted, error.StatusCode);
        Assert.Equal(StatusCode.Aborted, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task ServerStream_ErrorStatusArrivesBeforeTheReaderReads_ReaderGetsEveryMessageThenTheStatus()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "fail-after", Count = 3 });
        // Nobody reads until the call's status is in: the reply has been handled before the first read.
        Status status = await WaitForStatusAsync(call).WaitAsync(TestTimeouts.Long);
        var numbers = new List<long>();
        RpcException error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
                numbers.Add(call.ResponseStream.Current.Number);
            }
        });

        Assert.Equal(StatusCode.Aborted, status.StatusCode);
        // As over HTTP/2: the messages sent before the error, in order, then the error.
        Assert.Equal([0L, 1L, 2L], numbers);
        Assert.Equal(StatusCode.Aborted, error.StatusCode);
    }

    private static async Task<Status> WaitForStatusAsync(AsyncServerStreamingCall<CoreMessage> call)
    {
        while (true)
        {
            try
            {
                return call.GetStatus();
            }
            catch (InvalidOperationException)
            {
                // Not complete yet.
            }
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task ServerStream_EndsNotDisposed_LetsGoOfTheCallersToken()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        // A token that outlives the call, as an application's shutdown token does.
        using var lifetime = new CancellationTokenSource();
        AsyncServerStreamingCall<CoreMessage> call = grpc.Client.ServerStream(new CoreMessage { Count = 2, Number = 16 }, cancellationToken: lifetime.Token);
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
        }
        var stream = (GrpcClientStreamCall<CoreMessage, CoreMessage>)call.ResponseStream;
        await stream.SingleResponseAsync.WaitAsync(TestTimeouts.Long);

        // Ended, and not disposed by the application: the call's linked source is gone from the caller's token anyway.
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.True(stream.CancelSourceDisposed);
        call.Dispose();
    }

    [Fact]
    public async Task ServerStream_ClientDisposesMidStream_ServerTokenFires()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "wait", Count = 2 });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        call.Dispose();

        Assert.Equal(StatusCode.Cancelled, await grpc.Service.Cancelled.Task.WaitAsync(TestTimeouts.Long));
        await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task ServerStream_Deadline_ReaderGetsDeadlineExceededAndServerTokenFires()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        // Long enough for a loaded machine to start the handler before it (one that starts after it never runs).
        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "wait", Count = 1 }, deadline: DateTime.UtcNow.AddSeconds(3));
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        RpcException error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
            }
        });

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.Equal(StatusCode.DeadlineExceeded, await grpc.Service.Cancelled.Task.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task ClientStream_ManyMessages_ServerSumsThem()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = client.ClientStream();
        long expected = 0;
        for (int i = 0; i < 300; i++)
        {
            await call.RequestStream.WriteAsync(new CoreMessage { Data = ByteString.CopyFrom(new byte[i]) }).WaitAsync(TestTimeouts.Long);
            expected += i;
        }
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        CoreMessage reply = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal(expected, reply.Number);
        Assert.Equal(300, reply.Count);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task ClientStream_ServerFailsEarly_WritesAndResponseGetTheStatus()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = client.ClientStream();
        await call.RequestStream.WriteAsync(new CoreMessage { Text = "stop" }).WaitAsync(TestTimeouts.Long);
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        RpcException write = await Assert.ThrowsAsync<RpcException>(() => call.RequestStream.WriteAsync(new CoreMessage()).WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.ResourceExhausted, write.StatusCode);
    }

    [Fact]
    public async Task Duplex_EchoesEachMessage_ThenOk()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncDuplexStreamingCall<CoreMessage, CoreMessage> call = client.Duplex();
        for (int i = 0; i < 100; i++)
        {
            await call.RequestStream.WriteAsync(new CoreMessage { Text = $"m{i}", Number = i }).WaitAsync(TestTimeouts.Long);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
            Assert.Equal($"m{i}", call.ResponseStream.Current.Text);
            Assert.Equal(i * 2, call.ResponseStream.Current.Number);
        }
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);

        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Duplex_ClientCancels_ServerTokenFiresAndReaderGetsCancelled()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        using var cancel = new CancellationTokenSource();

        using AsyncDuplexStreamingCall<CoreMessage, CoreMessage> call = client.Duplex(cancellationToken: cancel.Token);
        await call.RequestStream.WriteAsync(new CoreMessage { Text = "wait" }).WaitAsync(TestTimeouts.Long);
        await Task.Delay(100);
        await cancel.CancelAsync();

        Assert.Equal(StatusCode.Cancelled, await grpc.Service.Cancelled.Task.WaitAsync(TestTimeouts.Long));
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
    }
}
