using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>A raw peer that breaks gRPC over PageRange: its connection ends as a protocol violation, the server serves on.</summary>
[Trait("Category", "Hostile")]
public sealed class GrpcHostileTests
{
    private const string UnaryMethod = "/pagerange.grpc.coretest.CoreTest/Unary";
    private const string ClientStreamMethod = "/pagerange.grpc.coretest.CoreTest/ClientStream";

    [Fact]
    public async Task MalformedRequestHead_ConnectionEndsAsViolation_NextClientServed()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        long residentBefore = 0;
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            // Call kind 9 does not exist.
            byte[] request = [9, .. new byte[40]];
            Exception error = await Assert.ThrowsAnyAsync<Exception>(() => raw.CallAsync(GrpcWire.MethodCode(UnaryMethod), request).AsTask().WaitAsync(TestTimeouts.Long));
            Assert.True(error is PeerDiedException or RemoteCallException, error.ToString());
            residentBefore = raw.Inbound.Region.ResidentBytes;
        }

        ClientDisconnectedEventArgs end = await disconnected.WaitAsync(TestTimeouts.Long);
        Assert.Equal(ClientDisconnectReason.ProtocolViolation, end.Reason);
        Assert.True(residentBefore > 0);
        await AssertServesAsync(server);
        await GrpcRawPeer.AssertRegionsGoneAsync(server.Name);
    }

    [Fact]
    public async Task MetadataBlockOverTheLimit_ConnectionEndsAsViolation()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            var head = new GrpcRequestHead(GrpcCallKind.Unary, 0, UnaryMethod, null, HasMessage: true, []);
            byte[] bytes = new byte[head.GetSize()];
            head.Write(bytes);
            // The metadata count (the head's last two bytes): 65 entries, over the limit of 64.
            bytes[^2] = GrpcWire.MaxMetadataEntries + 1;
            await Assert.ThrowsAnyAsync<Exception>(() => raw.CallAsync(GrpcWire.MethodCode(UnaryMethod), bytes).AsTask().WaitAsync(TestTimeouts.Long));
        }

        Assert.Equal(ClientDisconnectReason.ProtocolViolation, (await disconnected.WaitAsync(TestTimeouts.Long)).Reason);
        await AssertServesAsync(server);
    }

    [Fact]
    public async Task FrameOfUnknownKind_ConnectionEndsAsViolation()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            byte[] frame = new byte[GrpcFrames.HeadLength];
            frame[0] = 99;
            raw.SendOneway(GrpcWire.FrameCode, frame);
            Assert.Equal(ClientDisconnectReason.ProtocolViolation, (await disconnected.WaitAsync(TestTimeouts.Long)).Reason);
        }

        await AssertServesAsync(server);
    }

    [Fact]
    public async Task StreamWriterPastItsCredits_ConnectionEndsAsViolation()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            const ulong StreamId = 1;
            var head = new GrpcRequestHead(GrpcCallKind.Stream, StreamId, ClientStreamMethod, null, HasMessage: false, []);
            byte[] open = new byte[head.GetSize()];
            head.Write(open);
            Task<Transaction> call = raw.CallAsync(GrpcWire.MethodCode(ClientStreamMethod), open).AsTask();

            // The server grants the window once the stream exists.
            using (Transaction credit = await raw.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
            {
                Assert.Equal(GrpcWire.FrameCode, credit.Code);
                Assert.Equal((GrpcFrameKind.Credit, StreamId), GrpcFrames.ReadHead(credit.Payload));
            }
            // The handler reads the first message, then sleeps long: the rest wait unread, and the window ends at WindowMessages.
            for (int i = 0; i <= GrpcWire.WindowMessages + 1; i++)
            {
                byte[] message = new CoreMessage { DelayMs = i == 0 ? 600_000 : 0 }.ToByteArray();
                byte[] frame = new byte[GrpcFrames.HeadLength + message.Length];
                GrpcFrames.WriteHead(frame, GrpcFrameKind.Message, StreamId);
                message.CopyTo(frame, GrpcFrames.HeadLength);
                try
                {
                    raw.SendOneway(GrpcWire.FrameCode, frame);
                }
                catch (PeerDiedException)
                {
                    break;
                }
            }

            Assert.Equal(ClientDisconnectReason.ProtocolViolation, (await disconnected.WaitAsync(TestTimeouts.Long)).Reason);
            await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(TestTimeouts.Long));
        }

        await AssertServesAsync(server);
        // The victim let go of everything of that connection: no descriptor or mapping of its regions is left.
        await GrpcRawPeer.AssertRegionsGoneAsync(server.Name);
    }

    [Fact]
    public async Task ReplyAnnouncesMoreMessagesThanTheWindowAllows_ReadFailsAsViolationNotAtTheDeadline()
    {
        await using PageRangeListener listener = PageRangeListener.Listen(ControlHandshakeTests.UniqueName(), GrpcTestServer.ConnectionOptions());
        // A raw server that answers a server stream at once, claiming it sent 2^32 - 1 messages (it sent none).
        var head = new GrpcReplyHead(StatusCode.OK, "", uint.MaxValue, HasMessage: false, null, []);
        byte[] reply = new byte[head.GetSize()];
        head.Write(reply);
        Task<bool> serve = GrpcRawPeer.AnswerFirstCallAsync(listener, reply);
        await using PageRangeCallInvoker channel = PageRangeGrpcChannel.Create(listener.Name, new PageRangeGrpcChannelOptions { ConnectionOptions = GrpcTestServer.ConnectionOptions() });
        var client = new CoreTest.CoreTestClient(channel);

        // No deadline: without the check the read would wait for ever.
        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = 1 });
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
        Assert.Equal(StatusCode.Internal, call.GetStatus().StatusCode);
        // The client closed that connection as the server's protocol violation.
        Assert.False(await serve.WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task MethodNameDoesNotMatchTheCode_UnimplementedNotMisDispatched()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        await using PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server);
        // The code of Unary, the name of a method the server does not have (as a hash collision would send).
        var head = new GrpcRequestHead(GrpcCallKind.Unary, 0, "/other.Service/Unknown", null, HasMessage: true, []);
        byte[] bytes = new byte[head.GetSize()];
        head.Write(bytes);

        using Transaction reply = await raw.CallAsync(GrpcWire.MethodCode(UnaryMethod), bytes).AsTask().WaitAsync(TestTimeouts.Long);

        GrpcReplyHead read = GrpcReplyHead.Read(reply.Payload, out _);
        Assert.Equal(StatusCode.Unimplemented, read.Code);
        Assert.False(read.HasMessage);
        Assert.Equal(1, server.Server.ClientCount);
    }

    private static async Task AssertServesAsync(GrpcTestServer server)
    {
        await using PageRangeCallInvoker channel = server.Channel();
        var client = new CoreTest.CoreTestClient(channel);
        CoreMessage reply = await client.UnaryAsync(new CoreMessage { Number = 1, Data = ByteString.CopyFromUtf8("still here") }).ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal(2, reply.Number);
    }
}
