using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Conformance;

/// <summary>
/// The assertions of issue 14, run unchanged against every transport: a concrete class per transport supplies the
/// fixture (server and <see cref="CallInvoker"/>) and says, in <see cref="AssertPeer"/> and <see cref="AssertHost"/>,
/// the only places where the transports differ on purpose. Everything else a gRPC user relies on must read the same.
/// </summary>
public abstract class GrpcConformanceTests
{
    private const string ServiceName = "pagerange.conformance.GrpcConformance";

    private readonly ConformanceFixture _fixture;
    private readonly ITestOutputHelper _output;

    private protected GrpcConformanceTests(ConformanceFixture fixture, ITestOutputHelper output)
    {
        _fixture = fixture;
        _output = output;
        Client = new GrpcConformance.GrpcConformanceClient(fixture.Invoker);
    }

    private GrpcConformance.GrpcConformanceClient Client { get; }

    /// <summary>What <see cref="ServerCallContext.Peer"/> reads on this transport, for a client in this process.</summary>
    private protected abstract void AssertPeer(string peer);

    /// <summary>What <see cref="ServerCallContext.Host"/> reads on this transport.</summary>
    private protected abstract void AssertHost(string host);

    /// <summary>A channel to an address where no server listens, and what disposes it.</summary>
    private protected abstract IAsyncDisposable InvokerToNoServer(out CallInvoker invoker);

    [Theory]
    [InlineData(0)]
    [InlineData(64)]
    [InlineData(16 << 10)]
    [InlineData(1 << 20)]
    public async Task Unary_Echo_ReturnsTheRequestPayload(int size)
    {
        byte[] payload = ConformanceService.PatternChunk(7, size).Data.ToByteArray();

        EchoReply reply = await Client.EchoAsync(new EchoRequest { Payload = ByteString.CopyFrom(payload) }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal(payload, reply.Payload.ToByteArray());
    }

    [Fact]
    public void Unary_Blocking_ReturnsTheReplyOfTheRequestedSize()
    {
        EchoReply reply = Client.Echo(new EchoRequest { ReplySize = 3000 }, deadline: DateTime.UtcNow + TestTimeouts.Long);

        Assert.Equal(ConformanceService.PatternChunk(0, 3000).Data, reply.Payload);
    }

    [Fact]
    public async Task Unary_ManySequentialAndConcurrentCalls_EachGetsItsOwnReply()
    {
        Task<EchoReply>[] calls = Enumerable.Range(0, 64)
            .Select(i => Client.EchoAsync(new EchoRequest { Payload = ByteString.CopyFromUtf8($"call {i}") }).ResponseAsync)
            .ToArray();

        EchoReply[] replies = await Task.WhenAll(calls).WaitAsync(TestTimeouts.Long);

        Assert.Equal(Enumerable.Range(0, 64).Select(i => $"call {i}"), replies.Select(r => r.Payload.ToStringUtf8()));
    }

    [Fact]
    public async Task Headers_AsciiAndBinaryRequestHeaders_EchoedAsResponseHeadersAndTrailers()
    {
        byte[] binary = [0, 1, 2, 0xFF, 0x80, 10, 13];
        var headers = new Metadata { { "x-text", "hello, world" }, { "x-data-bin", binary } };

        using AsyncUnaryCall<CallInfo> call = Client.EchoHeadersAsync(new Empty(), headers);
        Metadata responseHeaders = await call.ResponseHeadersAsync.WaitAsync(TestTimeouts.Long);
        CallInfo info = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);
        Metadata trailers = call.GetTrailers();

        // What the server saw in RequestHeaders.
        Assert.Contains(info.Headers, h => h.Key == "x-text" && h.Value == "hello, world");
        Assert.Contains(info.Headers, h => h.Key == "x-data-bin" && h.Binary.ToByteArray().SequenceEqual(binary));
        // What the client got back as response headers, then as trailers.
        Assert.Equal("hello, world", responseHeaders.GetValue("x-text"));
        Assert.Equal(binary, responseHeaders.GetValueBytes("x-data-bin"));
        Assert.Equal("hello, world", trailers.GetValue("trailer-x-text"));
        Assert.Equal(binary, trailers.GetValueBytes("trailer-x-data-bin"));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task ServerCallContext_PeerMethodHostDeadline_DescribeTheCall()
    {
        CallInfo withoutDeadline = await Client.EchoHeadersAsync(new Empty()).ResponseAsync.WaitAsync(TestTimeouts.Long);
        CallInfo withDeadline = await Client.EchoHeadersAsync(new Empty(), deadline: DateTime.UtcNow + TestTimeouts.Long).ResponseAsync.WaitAsync(TestTimeouts.Long);

        _output.WriteLine($"peer: {withoutDeadline.Peer}, host: {withoutDeadline.Host}");
        AssertPeer(withoutDeadline.Peer);
        AssertHost(withoutDeadline.Host);
        Assert.Equal($"/{ServiceName}/EchoHeaders", withoutDeadline.Method);
        Assert.False(withoutDeadline.HasDeadline);
        Assert.True(withDeadline.HasDeadline);
    }

    [Theory]
    [InlineData(StatusCode.NotFound)]
    [InlineData(StatusCode.PermissionDenied)]
    [InlineData(StatusCode.FailedPrecondition)]
    [InlineData(StatusCode.ResourceExhausted)]
    [InlineData(StatusCode.Internal)]
    public async Task Status_HandlerThrowsRpcException_ClientGetsCodeDetailAndTrailers(StatusCode code)
    {
        var request = new FailRequest { Code = (int)code, Detail = $"the detail of {code}" };
        request.Trailers.Add("x-reason", "because");

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => Client.FailAsync(request).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(code, error.StatusCode);
        Assert.Equal($"the detail of {code}", error.Status.Detail);
        Assert.Equal("because", error.Trailers.GetValue("x-reason"));
    }

    [Fact]
    public void Status_BlockingCallHandlerThrowsRpcException_ClientGetsTheCode()
    {
        RpcException error = Assert.Throws<RpcException>(() => Client.Fail(new FailRequest { Code = (int)StatusCode.AlreadyExists, Detail = "blocking" }, deadline: DateTime.UtcNow + TestTimeouts.Long));

        Assert.Equal(StatusCode.AlreadyExists, error.StatusCode);
        Assert.Equal("blocking", error.Status.Detail);
    }

    [Fact]
    public async Task Status_HandlerThrowsOtherException_ClientGetsUnknownWithoutTheMessage()
    {
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => Client.ThrowAsync(new Empty()).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Unknown, error.StatusCode);
        Assert.Equal("Exception was thrown by handler.", error.Status.Detail);
    }

    [Fact]
    public async Task Deadline_Exceeded_ClientGetsDeadlineExceeded_ServerTokenFires()
    {
        string key = NewKey();

        RpcException error = await Assert.ThrowsAsync<RpcException>(() =>
            Client.WaitForCancelAsync(new RecordKey { Name = key }, deadline: DateTime.UtcNow.AddMilliseconds(500)).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Record record = await WaitForRecordAsync(key, r => r.Cancelled);
        Assert.True(record.Started);
    }

    [Fact]
    public async Task Cancellation_ClientCancels_ClientGetsCancelled_ServerTokenFires()
    {
        string key = NewKey();
        using var cancel = new CancellationTokenSource();
        using AsyncUnaryCall<Empty> call = Client.WaitForCancelAsync(new RecordKey { Name = key }, cancellationToken: cancel.Token);
        await WaitForRecordAsync(key, r => r.Started);

        await cancel.CancelAsync();
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        await WaitForRecordAsync(key, r => r.Cancelled);
    }

    [Fact]
    public async Task Cancellation_ClientCancelsAClientStream_ServerReaderSeesIt()
    {
        string key = NewKey();
        using var cancel = new CancellationTokenSource();
        using AsyncClientStreamingCall<Chunk, Sum> call = Client.ClientStream(
            new Metadata { { ConformanceService.RecordKeyHeader, key } }, cancellationToken: cancel.Token);
        await call.RequestStream.WriteAsync(ConformanceService.PatternChunk(0, 10)).WaitAsync(TestTimeouts.Long);
        await WaitForRecordAsync(key, r => r.Read == 1);

        await cancel.CancelAsync();

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        await WaitForRecordAsync(key, r => r.Cancelled);
    }

    [Fact]
    public async Task Cancellation_ClientDisposesTheCall_ServerTokenFires()
    {
        string key = NewKey();
        AsyncUnaryCall<Empty> call = Client.WaitForCancelAsync(new RecordKey { Name = key });
        await WaitForRecordAsync(key, r => r.Started);

        call.Dispose();

        await WaitForRecordAsync(key, r => r.Cancelled);
    }

    [Fact]
    public async Task ServerStreaming_CountMessagesOfSize_AllArriveInOrderWithTheirContent()
    {
        const int Count = 100;
        const int Size = 3000;
        using AsyncServerStreamingCall<Chunk> call = Client.ServerStream(new StreamRequest { Count = Count, Size = Size });

        int index = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(index, call.ResponseStream.Current.Index);
            Assert.Equal(ConformanceService.PatternChunk(index, Size).Data, call.ResponseStream.Current.Data);
            index++;
        }

        Assert.Equal(Count, index);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        Assert.NotNull(call.GetTrailers());
    }

    [Fact]
    public async Task ServerStreaming_HandlerThrowsMidStream_ReadsTheMessagesThenTheStatus()
    {
        using AsyncServerStreamingCall<Chunk> call = Client.ServerStream(new StreamRequest { Count = 100, Size = 10, FailAfter = 5, FailCode = (int)StatusCode.DataLoss });
        int read = 0;

        RpcException error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
                read++;
            }
        });

        Assert.Equal(5, read);
        Assert.Equal(StatusCode.DataLoss, error.StatusCode);
        Assert.Equal("failed after 5 messages", error.Status.Detail);
    }

    [Fact]
    public async Task Unavailable_NoServerListening_ClientGetsUnavailable()
    {
        await using IAsyncDisposable owner = InvokerToNoServer(out CallInvoker invoker);
        var client = new GrpcConformance.GrpcConformanceClient(invoker);

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest()).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
    }

    [Fact]
    public async Task ServerStreaming_ClientCancelsMidStream_ReadEndsWithCancelled()
    {
        using var cancel = new CancellationTokenSource();
        using AsyncServerStreamingCall<Chunk> call = Client.ServerStream(new StreamRequest { Count = 1_000_000, Size = 1024 }, cancellationToken: cancel.Token);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        await cancel.CancelAsync();

        RpcException error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
            }
        });
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
    }

    [Fact]
    public async Task ClientStreaming_Messages_ServerSumsThem()
    {
        using AsyncClientStreamingCall<Chunk, Sum> call = Client.ClientStream();
        long expectedChecksum = 0;
        for (int i = 0; i < 50; i++)
        {
            Chunk chunk = ConformanceService.PatternChunk(i, 100 * i);
            expectedChecksum += chunk.Data.Span.ToArray().Sum(b => (long)b);
            await call.RequestStream.WriteAsync(chunk).WaitAsync(TestTimeouts.Long);
        }
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);

        Sum sum = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal(50, sum.Count);
        Assert.Equal(Enumerable.Range(0, 50).Sum(i => 100L * i), sum.Bytes);
        Assert.Equal(expectedChecksum, sum.Checksum);
    }

    [Fact]
    public async Task ClientStreaming_HundredMiBAgainstSlowReader_WriterHeldBackToTheReader()
    {
        const int Size = 64 << 10;
        const int Count = (100 << 20) / Size;
        // Far below the 100 MiB sent; above what either transport holds in flight (PageRange's credits; HTTP/2's
        // stream and connection windows plus the socket's buffers).
        const int MaxAhead = (8 << 20) / Size;
        string key = NewKey();
        var headers = new Metadata { { ConformanceService.ReadDelayHeader, "1" }, { ConformanceService.RecordKeyHeader, key } };
        using AsyncClientStreamingCall<Chunk, Sum> call = Client.ClientStream(headers);
        Chunk chunk = ConformanceService.PatternChunk(1, Size);
        long written = 0;
        Task writer = Task.Run(async () =>
        {
            for (int i = 0; i < Count; i++)
            {
                await call.RequestStream.WriteAsync(chunk).WaitAsync(TestTimeouts.Long);
                Interlocked.Increment(ref written);
            }
            await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        });

        // The reader's count is read first, the writer's after: the difference can only overstate how far ahead it is.
        long maxAhead = 0;
        var clock = Stopwatch.StartNew();
        while (!writer.IsCompleted && clock.Elapsed < TimeSpan.FromMinutes(3))
        {
            Record record = await Client.GetRecordAsync(new RecordKey { Name = key }).ResponseAsync.WaitAsync(TestTimeouts.Long);
            maxAhead = Math.Max(maxAhead, Interlocked.Read(ref written) - record.Read);
            await Task.Delay(20);
        }
        await writer.WaitAsync(TimeSpan.FromMinutes(3));
        Sum sum = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);

        _output.WriteLine($"the writer was at most {maxAhead} messages ({maxAhead * Size >> 10} KiB) ahead of the reader");
        Assert.Equal(Count, sum.Count);
        Assert.Equal((long)Count * Size, sum.Bytes);
        Assert.InRange(maxAhead, 0, MaxAhead);
    }

    [Fact]
    public async Task DuplexStreaming_EachMessage_EchoedBeforeTheNextIsSent()
    {
        using AsyncDuplexStreamingCall<Chunk, Chunk> call = Client.Duplex();
        for (int i = 0; i < 30; i++)
        {
            Chunk chunk = ConformanceService.PatternChunk(i, i * 500);
            await call.RequestStream.WriteAsync(chunk).WaitAsync(TestTimeouts.Long);
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
            Assert.Equal(chunk, call.ResponseStream.Current);
        }
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);

        Assert.False(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Interceptors_EveryMethodKind_ClientAndServerInterceptorsCalled()
    {
        var interceptor = new RecordingClientInterceptor();
        var client = new GrpcConformance.GrpcConformanceClient(_fixture.Invoker.Intercept(interceptor));

        CallInfo info = await client.EchoHeadersAsync(new Empty()).ResponseAsync.WaitAsync(TestTimeouts.Long);
        client.Echo(new EchoRequest(), deadline: DateTime.UtcNow + TestTimeouts.Long);
        using (AsyncServerStreamingCall<Chunk> server = client.ServerStream(new StreamRequest { Count = 2, Size = 1 }))
        {
            while (await server.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
            }
        }
        using (AsyncClientStreamingCall<Chunk, Sum> clientStream = client.ClientStream())
        {
            await clientStream.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
            await clientStream.ResponseAsync.WaitAsync(TestTimeouts.Long);
        }
        using (AsyncDuplexStreamingCall<Chunk, Chunk> duplex = client.Duplex())
        {
            await duplex.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
            Assert.False(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        }

        // The header the client interceptor added reached the server's handler.
        Assert.Contains(info.Headers, h => h.Key == "x-intercepted" && h.Value == "client");
        Assert.Equal(
            [$"unary /{ServiceName}/EchoHeaders", $"blocking /{ServiceName}/Echo", $"server-streaming /{ServiceName}/ServerStream",
             $"client-streaming /{ServiceName}/ClientStream", $"duplex /{ServiceName}/Duplex"],
            interceptor.Calls);
        foreach (string method in new[] { "EchoHeaders", "Echo", "ServerStream", "ClientStream", "Duplex" })
        {
            Assert.Contains($"/{ServiceName}/{method}", _fixture.ServerInterceptor.Methods);
        }
    }

    private static string NewKey() => Guid.NewGuid().ToString("N");

    /// <summary>Polls the service's record of <paramref name="key"/> until <paramref name="done"/> holds (bounded).</summary>
    private async Task<Record> WaitForRecordAsync(string key, Func<Record, bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            Record record = await Client.GetRecordAsync(new RecordKey { Name = key }).ResponseAsync.WaitAsync(TestTimeouts.Long);
            if (done(record))
            {
                return record;
            }
            Assert.True(clock.Elapsed < TestTimeouts.Long, $"the record of {key} stayed {record}");
            await Task.Delay(10);
        }
    }
}
