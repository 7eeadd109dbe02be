using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// Stream writes that find the peer's region full: the call's deadline or cancellation ends the wait for room (the
/// region's timeout is 30 s in these tests), and the connection serves the next call once the room is back.
/// </summary>
public sealed class GrpcStreamRegionFullTests
{
    /// <summary>The request that holds the server's region (256 KiB, about 120 KiB of data) while its handler waits.</summary>
    private static readonly ByteString s_holding = ByteString.CopyFrom(new byte[80 * 1024]);

    /// <summary>A message that fits the oneway quota (half the data area) but not the room the held request leaves.</summary>
    private static readonly ByteString s_large = ByteString.CopyFrom(new byte[48 * 1024]);

    [Fact]
    public async Task ClientStreamWrite_ServerRegionFullPastTheDeadline_DeadlineExceededNotTheRegionsTimeout()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = await HoldTheServersRegionAsync(grpc, release.Token);

        // Long enough for a loaded machine to open the stream and have its first message read before it.
        DateTime deadline = DateTime.UtcNow.AddSeconds(3);
        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = grpc.Client.ClientStream(deadline: deadline);
        await WriteFirstMessageAsync(grpc, call);
        var clock = Stopwatch.StartNew();
        RpcException late = await Assert.ThrowsAsync<RpcException>(() => Task.Run(() => call.RequestStream.WriteAsync(new CoreMessage { Data = s_large }))
            .WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout));

        Assert.True(late.StatusCode == StatusCode.DeadlineExceeded, $"{late.StatusCode}: {late.Status.Detail}");
        Assert.True(clock.Elapsed < GrpcFrameWriterTests.WellBeforeTheRegionsTimeout, $"the write took {clock.Elapsed}");
        Assert.True(DateTime.UtcNow >= deadline.AddMilliseconds(-50), "the write ended before the deadline");
        RpcException status = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.DeadlineExceeded, status.StatusCode);
        await AssertTheRoomComesBackAsync(grpc, connection, holding, release);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ClientStreamWrite_ServerRegionFullAndTheCallCancelled_CancelledNotTheRegionsTimeout(bool disposeTheCall)
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = await HoldTheServersRegionAsync(grpc, release.Token);

        using var cancel = new CancellationTokenSource();
        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = grpc.Client.ClientStream(cancellationToken: cancel.Token);
        await WriteFirstMessageAsync(grpc, call);
        Task write = await StartAWriteThatWaitsForRoomAsync(connection, () => call.RequestStream.WriteAsync(new CoreMessage { Data = s_large }));
        var clock = Stopwatch.StartNew();
        if (disposeTheCall)
        {
            call.Dispose();
        }
        else
        {
            await cancel.CancelAsync();
        }
        RpcException cancelled = await Assert.ThrowsAsync<RpcException>(() => write.WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout));

        Assert.True(cancelled.StatusCode == StatusCode.Cancelled, $"{cancelled.StatusCode}: {cancelled.Status.Detail}");
        Assert.True(clock.Elapsed < GrpcFrameWriterTests.WellBeforeTheRegionsTimeout, $"the write took {clock.Elapsed}");
        await AssertTheRoomComesBackAsync(grpc, connection, holding, release);
    }

    [Theory]
    [InlineData("abort", StatusCode.Aborted)]
    [InlineData("return", StatusCode.OK)]
    public async Task ClientStreamWrite_ServerRegionFullAndTheServerEndsTheCall_EndsWithTheCallsStatusAndDisposeDoesNotWait(string end, StatusCode expected)
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = await HoldTheServersRegionAsync(grpc, release.Token);

        // The handler reads the first message, waits here while the client's next write finds no room, then ends the
        // call (with an error status, or OK before the client is done): no deadline, no cancel by the client.
        using var handlerGoesOn = new ManualResetEventSlim();
        grpc.Service.OnClientMessageRead = () => handlerGoesOn.Wait(TestTimeouts.Long);
        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = grpc.Client.ClientStream();
        var stream = (GrpcClientStreamCall<CoreMessage, CoreMessage>)call.RequestStream;
        await WriteFirstMessageAsync(grpc, call, end);
        int credits = stream.CreditsHeld;
        Task write = await StartAWriteThatWaitsForRoomAsync(connection, () => call.RequestStream.WriteAsync(new CoreMessage { Data = s_large }));
        var clock = Stopwatch.StartNew();
        handlerGoesOn.Set();

        // The call's end, as the application sees it.
        await Record.ExceptionAsync(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.Equal(expected, call.GetStatus().StatusCode);
        // Dispose takes the writer's lock, which the waiting write held until the region's timeout.
        await Task.Run(call.Dispose).WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout);
        RpcException ended = await Assert.ThrowsAsync<RpcException>(() => write.WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout));

        // As grpc-dotnet: the call's status, OK too.
        Assert.True(ended.StatusCode == expected, $"{ended.StatusCode}: {ended.Status.Detail}");
        Assert.Equal(call.GetStatus().Detail, ended.Status.Detail);
        Assert.Equal(call.GetTrailers().GetValue("why"), ended.Trailers.GetValue("why"));
        Assert.True(clock.Elapsed < GrpcFrameWriterTests.WellBeforeTheRegionsTimeout, $"the write took {clock.Elapsed}");
        Assert.Equal(credits, stream.CreditsHeld);
        await AssertTheRoomComesBackAsync(grpc, connection, holding, release);
    }

    [Fact]
    public async Task ClientStreamWrite_ServerRegionFullAndTheWritesTokenCancelled_CancelledAndTheCallCancelled()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = await HoldTheServersRegionAsync(grpc, release.Token);

        // No deadline and no token on the call: only the write's own token can end its wait for room.
        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = grpc.Client.ClientStream();
        var stream = (GrpcClientStreamCall<CoreMessage, CoreMessage>)call.RequestStream;
        await WriteFirstMessageAsync(grpc, call);
        int credits = stream.CreditsHeld;
        using var cancelTheWrite = new CancellationTokenSource();
        Task write = await StartAWriteThatWaitsForRoomAsync(connection, () => call.RequestStream.WriteAsync(new CoreMessage { Data = s_large }, cancelTheWrite.Token));
        var clock = Stopwatch.StartNew();
        await cancelTheWrite.CancelAsync();
        RpcException cancelled = await Assert.ThrowsAsync<RpcException>(() => write.WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout));

        Assert.True(cancelled.StatusCode == StatusCode.Cancelled, $"{cancelled.StatusCode}: {cancelled.Status.Detail}");
        Assert.True(clock.Elapsed < GrpcFrameWriterTests.WellBeforeTheRegionsTimeout, $"the write took {clock.Elapsed}");
        Assert.Equal(credits, stream.CreditsHeld);
        // As grpc-dotnet: the call is cancelled with the write.
        RpcException status = await Assert.ThrowsAsync<RpcException>(() => call.ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.Cancelled, status.StatusCode);
        await AssertTheRoomComesBackAsync(grpc, connection, holding, release);
    }

    [Fact]
    public async Task ServerStreamWrite_ClientRegionFullPastTheDeadline_TheHandlersWriteEndsAtTheDeadline()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        // The service's own method, with a response marshaller that waits: the client's reader deserializes each message
        // from its frame in the client's region, so while it waits it holds the first frame, and with it most of the
        // oneway quota the server's next frame needs.
        using var deserializing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var method = new Method<CoreMessage, CoreMessage>(MethodType.ServerStreaming, "pagerange.grpc.coretest.CoreTest", "ServerStream",
            Marshallers.Create<CoreMessage>(static message => message.ToByteArray(), CoreMessage.Parser.ParseFrom),
            Marshallers.Create<CoreMessage>(static message => message.ToByteArray(), bytes =>
            {
                deserializing.Set();
                release.Wait(TestTimeouts.Long);
                return CoreMessage.Parser.ParseFrom(bytes);
            }));

        DateTime deadline = DateTime.UtcNow.AddSeconds(3);
        AsyncServerStreamingCall<CoreMessage> call;
        Exception failed;
        var clock = Stopwatch.StartNew();
        try
        {
            call = grpc.Channel.AsyncServerStreamingCall(method, null, new CallOptions(deadline: deadline), new CoreMessage { Number = s_large.Length, Count = 3 });
            failed = await grpc.Service.ServerWriteFailed.Task.WaitAsync(GrpcFrameWriterTests.WellBeforeTheRegionsTimeout);
        }
        finally
        {
            release.Set();
        }

        Assert.True(deserializing.IsSet, "the client's reader never got the first message");
        Assert.True(failed is OperationCanceledException, $"{failed}");
        Assert.True(clock.Elapsed < GrpcFrameWriterTests.WellBeforeTheRegionsTimeout, $"the write took {clock.Elapsed}");
        Assert.True(DateTime.UtcNow >= deadline.AddMilliseconds(-50), "the write ended before the deadline");
        using (call)
        {
            RpcException late = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
                {
                }
            });
            Assert.Equal(StatusCode.DeadlineExceeded, late.StatusCode);
        }

        // The room is back: the next stream on the same connection gets every message.
        using AsyncServerStreamingCall<CoreMessage> next = grpc.Client.ServerStream(new CoreMessage { Number = s_large.Length, Count = 3 });
        int read = 0;
        while (await next.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal((read, s_large.Length), (next.ResponseStream.Current.Number, next.ResponseStream.Current.Data.Length));
            read++;
        }
        Assert.Equal(3, read);
        Assert.Same(connection, await grpc.ConnectionAsync());
    }

    /// <summary>A unary call whose 80 KiB request stays in the server's region until <paramref name="release"/> is cancelled.</summary>
    private static async Task<AsyncUnaryCall<CoreMessage>> HoldTheServersRegionAsync(GrpcTestClient grpc, CancellationToken release)
    {
        AsyncUnaryCall<CoreMessage> holding = grpc.Client.UnaryAsync(new CoreMessage { Text = "wait", Data = s_holding }, cancellationToken: release);
        await Poll.WaitUntilAsync(() => grpc.Server.Server.InFlightCalls == 1, "the holding call's handler holds its request");
        return holding;
    }

    /// <summary>Starts <paramref name="write"/> on the thread pool and returns once it waits for room in the server's full region.</summary>
    private static async Task<Task> StartAWriteThatWaitsForRoomAsync(GrpcClientConnection connection, Func<Task> write)
    {
        long failedBefore = connection.Connection.OutboundStats.FailedReservations;
        Task writing = Task.Run(write);
        await Poll.WaitUntilAsync(() => connection.Connection.OutboundStats.FailedReservations > failedBefore || writing.IsCompleted, "the write found no room");
        Assert.False(writing.IsCompleted, $"the write ended while the region was full: {writing.Exception}");
        return writing;
    }

    /// <summary>Writes a small message and waits until the server read it: the stream is open and has its credit.</summary>
    private static async Task WriteFirstMessageAsync(GrpcTestClient grpc, AsyncClientStreamingCall<CoreMessage, CoreMessage> call, string text = "first")
    {
        await call.RequestStream.WriteAsync(new CoreMessage { Text = text }).WaitAsync(TestTimeouts.Long);
        await Poll.WaitUntilAsync(() => grpc.Service.ClientMessagesRead == 1, "the server read the first message");
        GrpcClientConnection connection = await grpc.ConnectionAsync();
        PageRange.Allocation.BufferAllocatorStats room = connection.Connection.OutboundStats;
        Assert.True(s_large.Length > Math.Min(room.LargestFreeRange, room.FreeOnewaySpace), $"the large message fits: {room}");
    }

    /// <summary>
    /// After the failed write: nothing of it stays reserved, and once the holding call goes the same connection takes a
    /// large client stream again.
    /// </summary>
    private static async Task AssertTheRoomComesBackAsync(
        GrpcTestClient grpc, GrpcClientConnection connection, AsyncUnaryCall<CoreMessage> holding, CancellationTokenSource release)
    {
        await Poll.WaitUntilAsync(() => connection.Connection.OutboundStats.ReservedBuffers == 0, "nothing stays reserved in the server's region");
        await release.CancelAsync();
        await Assert.ThrowsAsync<RpcException>(() => holding.ResponseAsync.WaitAsync(TestTimeouts.Long));

        using AsyncClientStreamingCall<CoreMessage, CoreMessage> next = grpc.Client.ClientStream();
        await next.RequestStream.WriteAsync(new CoreMessage { Data = s_large }).WaitAsync(TestTimeouts.Long);
        await next.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        CoreMessage summed = await next.ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal((s_large.Length, 1), (summed.Number, summed.Count));
        Assert.Same(connection, await grpc.ConnectionAsync());
    }
}
