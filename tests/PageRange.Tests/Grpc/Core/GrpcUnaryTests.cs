using Google.Protobuf;
using Grpc.Core;
using Grpc.Core.Interceptors;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>Unary calls of a generated client against a mapped service, in one process.</summary>
public sealed class GrpcUnaryTests
{
    [Fact]
    public async Task AsyncUnary_Echo_ReturnsTheServiceResponse()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Text = "hi", Number = 41, Data = ByteString.CopyFrom(1, 2, 3) }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal("hi", reply.Text);
        Assert.Equal(42, reply.Number);
        Assert.Equal(new byte[] { 1, 2, 3 }, reply.Data.ToByteArray());
    }

    [Fact]
    public async Task BlockingUnary_ManyCalls_EachGetsItsResponse()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        await Task.Run(() =>
        {
            for (int i = 0; i < 200; i++)
            {
                CoreMessage reply = client.Unary(new CoreMessage { Number = i, Data = ByteString.CopyFrom(new byte[i * 37]) });
                Assert.Equal(i + 1, reply.Number);
                Assert.Equal(i * 37, reply.Data.Length);
            }
        }).WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task AsyncUnary_LargeMessage_RoundTrips()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        byte[] data = new byte[1 << 20];
        new Random(5).NextBytes(data);

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Data = ByteString.CopyFrom(data) }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal(data, reply.Data.ToByteArray());
    }

    [Fact]
    public async Task AsyncUnary_HandlerThrowsRpcException_ClientGetsItsStatusAndTrailers()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        AsyncUnaryCall<CoreMessage> call = client.UnaryAsync(new CoreMessage { Text = "throw-rpc" });
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.NotFound, error.StatusCode);
        Assert.Equal("not here", error.Status.Detail);
        Assert.Equal("because", error.Trailers.GetValue("why"));
        Assert.Equal(StatusCode.NotFound, call.GetStatus().StatusCode);
        Assert.Equal("because", call.GetTrailers().GetValue("why"));
    }

    [Fact]
    public async Task BlockingUnary_HandlerThrowsOtherException_ClientGetsUnknown()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => Task.Run(() => client.Unary(new CoreMessage { Text = "throw" })).WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Unknown, error.StatusCode);
        Assert.Equal("Exception was thrown by handler.", error.Status.Detail);
    }

    [Fact]
    public async Task AsyncUnary_HandlerSetsStatus_ClientGetsIt()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage { Text = "status" }).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.FailedPrecondition, error.StatusCode);
        Assert.Equal("set, not thrown", error.Status.Detail);
    }

    [Fact]
    public async Task AsyncUnary_Context_ServerSeesPeerMethodHostHeadersDeadline_ClientSeesResponseHeadersAndTrailers()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        DateTime deadline = DateTime.UtcNow.AddMinutes(5);

        AsyncUnaryCall<CoreMessage> call = client.UnaryAsync(new CoreMessage { Text = "context" }, new Metadata { { "req-h", "r1" } }, deadline);
        CoreMessage reply = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);
        Metadata headers = await call.ResponseHeadersAsync.WaitAsync(TestTimeouts.Long);

        string[] parts = reply.Text.Split('|');
        Assert.Equal($"pagerange:pid={Environment.ProcessId},uid={Interop.GetEffectiveUserId()}", parts[0]);
        Assert.Equal("/pagerange.grpc.coretest.CoreTest/Unary", parts[1]);
        Assert.Equal("r1", parts[3]);
        DateTime seen = DateTime.Parse(parts[4], System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind);
        Assert.True(Math.Abs((seen - deadline).TotalMilliseconds) < 5, $"deadline {deadline:O} seen as {seen:O}");
        Assert.Equal("v1", headers.GetValue("resp-h"));
        Metadata trailers = call.GetTrailers();
        Assert.Equal("t1", trailers.GetValue("trail"));
        Assert.Equal(new byte[] { 1, 2, 3 }, trailers.GetValueBytes("trail-bin"));
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task AsyncUnary_DeadlinePasses_ClientGetsDeadlineExceededAndServerTokenFires()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        // Long enough for a loaded machine to start the handler before it (one that starts after it never runs).
        AsyncUnaryCall<CoreMessage> call = client.UnaryAsync(new CoreMessage { Text = "wait" }, deadline: DateTime.UtcNow.AddSeconds(2));
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.DeadlineExceeded, error.StatusCode);
        Assert.Equal(StatusCode.DeadlineExceeded, await grpc.Service.Cancelled.Task.WaitAsync(TestTimeouts.Long));
    }

    [Theory]
    [InlineData(30)]
    [InlineData(3650)]
    public async Task AsyncUnary_DeadlineFurtherThanATimerHolds_HandlerSeesItWithTheTransportsTokenUncancelled(int days)
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        DateTime deadline = DateTime.UtcNow.AddDays(days);

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Text = "deadline-token" }, deadline: deadline).ResponseAsync.WaitAsync(TestTimeouts.Long);

        // The handler's token is the transport's: its timer fires at a deadline a timer holds, and it treats one further
        // off as none. The gRPC layer's own timer, capped at 20 days, ended such a call on day 20.
        string[] parts = reply.Text.Split('|');
        Assert.Equal(("True", "False"), (parts[0], parts[1]));
        DateTime seen = DateTime.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.RoundtripKind);
        Assert.True(Math.Abs((seen - deadline).TotalMilliseconds) < 5, $"deadline {deadline:O} seen as {seen:O}");
    }

    [Fact]
    public async Task AsyncUnary_ServerRegionFullPastTheDeadline_DeadlineExceededNotTheRegionsTimeout()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: RegionFullTestSize);
        await AssertDeadlineEndsTheWaitForRoomAsync(grpc);
    }

    /// <summary>The server region of <see cref="AssertDeadlineEndsTheWaitForRoomAsync"/>'s clients: 256 KiB, about 120 KiB of data.</summary>
    internal const long RegionFullTestSize = 256 * 1024;

    /// <summary>
    /// The server's region is held by a first call's large request while its handler waits; a second large request finds
    /// no room. Its 300 ms deadline ends that wait: it waited the region's whole timeout (30 s in these tests) and failed
    /// as ResourceExhausted. Then the first call goes, and the room is back for the next large call.
    /// </summary>
    internal static async Task AssertDeadlineEndsTheWaitForRoomAsync(GrpcTestClient grpc)
    {
        var client = grpc.Client;
        ByteString large = ByteString.CopyFrom(new byte[80 * 1024]);
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = client.UnaryAsync(new CoreMessage { Text = "wait", Data = large }, cancellationToken: release.Token);
        await Poll.WaitUntilAsync(() => grpc.Server.Server.InFlightCalls == 1, "the first call's handler holds its request");

        RpcException late = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(
            new CoreMessage { Text = "late", Data = large }, deadline: DateTime.UtcNow.AddMilliseconds(300)).ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.True(late.StatusCode == StatusCode.DeadlineExceeded, $"{late.StatusCode}: {late.Status.Detail}");

        await release.CancelAsync();
        await Assert.ThrowsAsync<RpcException>(() => holding.ResponseAsync.WaitAsync(TestTimeouts.Long));
        CoreMessage echoed = await client.UnaryAsync(new CoreMessage { Number = 4, Data = large }).ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal((5, large.Length), (echoed.Number, echoed.Data.Length));
    }

    [Fact]
    public async Task AsyncUnary_ClientCancels_ClientGetsCancelledAndServerTokenFires()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        using var cancel = new CancellationTokenSource();

        AsyncUnaryCall<CoreMessage> call = client.UnaryAsync(new CoreMessage { Text = "wait" }, cancellationToken: cancel.Token);
        await Task.Delay(200);
        await cancel.CancelAsync();
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Cancelled, error.StatusCode);
        Assert.Equal(StatusCode.Cancelled, await grpc.Service.Cancelled.Task.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Calls_TokenCancelledBeforehand_CancelledAndNothingReachesTheServer()
    {
        await using PageRangeListener listener = PageRangeListener.Listen(ControlHandshakeTests.UniqueName(), GrpcTestServer.ConnectionOptions());
        // A raw server: the first request it receives is the first one the client published.
        Task<string> firstRequest = Task.Run(async () =>
        {
            await using PageRangeConnection connection = await listener.AcceptAsync();
            using Transaction call = await connection.ReceiveAsync();
            GrpcRequestHead head = GrpcRequestHead.Read(call.Payload, out int length);
            CoreMessage request = CoreMessage.Parser.ParseFrom(call.Payload[length..]);
            var reply = new GrpcReplyHead(StatusCode.OK, "", 0, HasMessage: true, null, []);
            byte[] message = request.ToByteArray();
            byte[] bytes = new byte[reply.GetSize() + message.Length];
            reply.Write(bytes);
            message.CopyTo(bytes, reply.GetSize());
            call.Reply(bytes);
            return $"{head.Kind} {request.Text}";
        });
        await using PageRangeCallInvoker channel = PageRangeGrpcChannel.Create(listener.Name, new PageRangeGrpcChannelOptions { ConnectionOptions = GrpcTestServer.ConnectionOptions() });
        var client = new CoreTest.CoreTestClient(channel);
        // Connected first: a cancelled token would otherwise stop the calls before any connection exists.
        await channel.GetConnectionAsync(CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        RpcException asyncError = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage { Text = "async" }, cancellationToken: cancelled.Token).ResponseAsync.WaitAsync(TestTimeouts.Long));
        RpcException blockingError = Assert.Throws<RpcException>(() => client.Unary(new CoreMessage { Text = "blocking" }, cancellationToken: cancelled.Token));
        using AsyncServerStreamingCall<CoreMessage> stream = client.ServerStream(new CoreMessage { Text = "stream" }, cancellationToken: cancelled.Token);
        RpcException streamError = await Assert.ThrowsAsync<RpcException>(() => stream.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        CoreMessage after = await client.UnaryAsync(new CoreMessage { Text = "after" }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal([StatusCode.Cancelled, StatusCode.Cancelled, StatusCode.Cancelled], new[] { asyncError.StatusCode, blockingError.StatusCode, streamError.StatusCode });
        Assert.Equal("after", after.Text);
        Assert.Equal($"{GrpcCallKind.Unary} after", await firstRequest.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Metadata_RequestHeaderNotPrintableAscii_InternalLocallyAndTheConnectionServesTheNextCall()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        GrpcClientConnection connection = await grpc.ConnectionAsync();

        RpcException asyncError = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage(), new Metadata { { "x-name", "caf\u00E9" } }).ResponseAsync.WaitAsync(TestTimeouts.Long));
        RpcException blockingError = Assert.Throws<RpcException>(() => client.Unary(new CoreMessage(), new Metadata { { "x-text", "line one\nline two" } }));
        using AsyncServerStreamingCall<CoreMessage> stream = client.ServerStream(new CoreMessage { Count = 1 }, new Metadata { { "x-tab", "a\tb" } });
        RpcException streamError = await Assert.ThrowsAsync<RpcException>(() => stream.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        Assert.Equal([StatusCode.Internal, StatusCode.Internal, StatusCode.Internal], new[] { asyncError.StatusCode, blockingError.StatusCode, streamError.StatusCode });
        Assert.Contains("'x-name'", asyncError.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("'x-text'", blockingError.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("'x-tab'", streamError.Status.Detail, StringComparison.Ordinal);
        // Nothing went out: the server closed nothing, and the same connection serves the next call.
        Assert.Equal(2, (await client.UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        Assert.Same(connection, await grpc.ConnectionAsync());
        Assert.True(connection.IsAlive);
    }

    [Fact]
    public async Task Metadata_HandlerTrailerNotPrintableAscii_ClientGetsInternalAndTheConnectionServesTheNextCall()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        GrpcClientConnection connection = await grpc.ConnectionAsync();

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage { Text = "bad-trailer" }).ResponseAsync.WaitAsync(TestTimeouts.Long));

        // The trailers could not be sent: the status says which one, and the call alone ends.
        Assert.Equal(StatusCode.Internal, error.StatusCode);
        Assert.Contains("'error-details'", error.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(2, (await client.UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        Assert.Same(connection, await grpc.ConnectionAsync());
        Assert.True(connection.IsAlive);
    }

    [Fact]
    public async Task AsyncUnary_NoServer_Unavailable()
    {
        await using PageRangeCallInvoker channel = PageRangeGrpcChannel.Create(ControlHandshakeTests.UniqueName());
        var client = new CoreTest.CoreTestClient(channel);

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage()).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
    }

    [Fact]
    public async Task AsyncUnary_ServerStopsThenComesBack_UnavailableThenTheChannelReconnects()
    {
        GrpcTestServer first = GrpcTestServer.Start();
        string name = first.Name;
        await using PageRangeCallInvoker channel = first.Channel();
        var client = new CoreTest.CoreTestClient(channel);
        Assert.Equal(2, (await client.UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);

        await first.DisposeAsync();
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage()).ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.Unavailable, error.StatusCode);

        await using PageRangeServer second = PageRangeServer.Start(name, new PageRangeServerOptions { StartShrinkerMonitor = false, ConnectionOptions = GrpcTestServer.ConnectionOptions() },
            builder => builder.MapGrpcService(new CoreTestService()));
        Assert.Equal(8, (await client.UnaryAsync(new CoreMessage { Number = 7 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
    }

    [Fact]
    public async Task AsyncUnary_MethodNotMapped_Unimplemented()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start((builder, service) => builder.Map(1, (Transaction tx, CallContext ctx) => tx.Reply([])));
        var client = grpc.Client;

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage()).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Unimplemented, error.StatusCode);
    }

    [Fact]
    public async Task Interceptors_ClientAndServer_BothRunAroundTheCall()
    {
        var serverSeen = new List<string>();
        var options = new PageRangeGrpcServiceOptions();
        options.Interceptors.Add(new RecordingInterceptor("outer", serverSeen));
        options.Interceptors.Add(new RecordingInterceptor("inner", serverSeen));
        await using GrpcTestServer server = GrpcTestServer.Start((builder, service) => builder.MapGrpcService(service, options));
        await using PageRangeCallInvoker channel = server.Channel();
        var clientSeen = new List<string>();
        var client = new CoreTest.CoreTestClient(channel.Intercept(new RecordingInterceptor("client", clientSeen)));

        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long);

        Assert.Equal(2, reply.Number);
        Assert.Equal(["client:/pagerange.grpc.coretest.CoreTest/Unary"], clientSeen);
        Assert.Equal(["outer:/pagerange.grpc.coretest.CoreTest/Unary", "inner:/pagerange.grpc.coretest.CoreTest/Unary"], serverSeen);
    }

    [Fact]
    public async Task MapGrpcService_PerCall_MakesAnInstanceForEachCall()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start((builder, service) => builder.MapGrpcService<CoreTestService>());
        var client = grpc.Client;
        await client.UnaryAsync(new CoreMessage()).ResponseAsync.WaitAsync(TestTimeouts.Long);
        int before = CoreTestService.Instances;

        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(i + 1, (await client.UnaryAsync(new CoreMessage { Number = i }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        }

        // Other tests make instances at the same time: at least one per call here.
        Assert.True(CoreTestService.Instances - before >= 3);
    }

    [Fact]
    public async Task MapGrpcService_Factory_CalledForEachCall()
    {
        int made = 0;
        await using GrpcTestServer server = GrpcTestServer.Start((builder, service) => builder.MapGrpcService(() =>
        {
            Interlocked.Increment(ref made);
            return new CoreTestService();
        }));
        await using PageRangeCallInvoker channel = server.Channel();
        var client = new CoreTest.CoreTestClient(channel);
        int afterMapping = Volatile.Read(ref made);

        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(i + 1, (await client.UnaryAsync(new CoreMessage { Number = i }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        }
        using AsyncDuplexStreamingCall<CoreMessage, CoreMessage> duplex = client.Duplex();
        await duplex.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        Assert.False(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        Assert.Equal(1, afterMapping);
        Assert.Equal(afterMapping + 4, Volatile.Read(ref made));
    }

    [Fact]
    public async Task Interceptors_Server_WrapStreamingMethodsToo()
    {
        var seen = new List<string>();
        var options = new PageRangeGrpcServiceOptions();
        options.Interceptors.Add(new RecordingInterceptor("server", seen));
        await using GrpcTestClient grpc = GrpcTestClient.Start((builder, service) => builder.MapGrpcService(service, options));
        var client = grpc.Client;

        using AsyncDuplexStreamingCall<CoreMessage, CoreMessage> duplex = client.Duplex();
        await duplex.RequestStream.WriteAsync(new CoreMessage { Number = 4 }).WaitAsync(TestTimeouts.Long);
        Assert.True(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        long doubled = duplex.ResponseStream.Current.Number;
        await duplex.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        Assert.False(await duplex.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        using AsyncServerStreamingCall<CoreMessage> stream = client.ServerStream(new CoreMessage { Count = 1 });
        Assert.True(await stream.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        Assert.Equal(8, doubled);
        lock (seen)
        {
            Assert.Equal(["server:duplex", "server:server-streaming"], seen);
        }
    }

    [Fact]
    public async Task Reply_MalformedFromARawServer_InternalAndTheClientClosesThatConnection()
    {
        await using PageRangeListener listener = PageRangeListener.Listen(ControlHandshakeTests.UniqueName(), GrpcTestServer.ConnectionOptions());
        // Status code 99 does not exist.
        Task<bool> serve = GrpcRawPeer.AnswerFirstCallAsync(listener, [99, 0, 0, 0, 0, 0]);
        await using PageRangeCallInvoker channel = PageRangeGrpcChannel.Create(listener.Name, new PageRangeGrpcChannelOptions { ConnectionOptions = GrpcTestServer.ConnectionOptions() });
        var client = new CoreTest.CoreTestClient(channel);

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(new CoreMessage()).ResponseAsync.WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
        Assert.False(await serve.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public void MapGrpcService_SameServiceTwice_Refused()
    {
        var error = Assert.Throws<ArgumentException>(() => PageRangeServer.Start(ControlHandshakeTests.UniqueName(), builder =>
        {
            builder.MapGrpcService(new CoreTestService());
            builder.MapGrpcService(new CoreTestService());
        }));
        Assert.Contains("mapped already", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MapGrpcService_NotAGrpcService_Refused()
    {
        Assert.Throws<ArgumentException>(() => PageRangeServer.Start(ControlHandshakeTests.UniqueName(), builder => builder.MapGrpcService(new object())));
    }

    private sealed class RecordingInterceptor(string name, List<string> seen) : Interceptor
    {
        public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
            IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
            DuplexStreamingServerMethod<TRequest, TResponse> continuation)
        {
            lock (seen)
            {
                seen.Add($"{name}:duplex");
            }
            return continuation(requestStream, responseStream, context);
        }

        public override Task ServerStreamingServerHandler<TRequest, TResponse>(
            TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
        {
            lock (seen)
            {
                seen.Add($"{name}:server-streaming");
            }
            return continuation(request, responseStream, context);
        }

        public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
        {
            lock (seen)
            {
                seen.Add($"{name}:{context.Method}");
            }
            return continuation(request, context);
        }

        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
            TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            lock (seen)
            {
                seen.Add($"{name}:{context.Method.FullName}");
            }
            return continuation(request, context);
        }
    }
}
