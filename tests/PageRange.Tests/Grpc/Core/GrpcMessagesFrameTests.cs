using System.Buffers.Binary;
using Google.Protobuf;
using PageRange.Grpc;
using PageRange.Server;
using PageRange.Tests.CrossProcess;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// Frames of several messages (<see cref="GrpcFrameKind.Messages"/>): a well-formed one from a raw peer is read message
/// by message, in order; a malformed count or length ends that connection as a protocol violation and the victim lets
/// go of its regions and memory, and serves on.
/// </summary>
public sealed class GrpcMessagesFrameTests
{
    private const string ClientStreamMethod = "/pagerange.grpc.coretest.CoreTest/ClientStream";
    private const ulong StreamId = 1;

    [Fact]
    public async Task MessagesFrame_FromRawPeer_EveryMessageReadInOrder()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        await using PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server);
        Task<Transaction> call = await OpenClientStreamAsync(raw);
        byte[][] messages = [.. Enumerable.Range(1, 5).Select(i => new CoreMessage { Data = ByteString.CopyFrom(new byte[i * 10]) }.ToByteArray())];
        raw.SendOneway(GrpcWire.FrameCode, MessagesFrame(messages));
        raw.SendOneway(GrpcWire.FrameCode, HalfClose());

        using Transaction reply = await call.WaitAsync(TestTimeouts.Long);

        GrpcReplyHead head = GrpcReplyHead.Read(reply.Payload, out int length);
        Assert.Equal(global::Grpc.Core.StatusCode.OK, head.Code);
        CoreMessage response = CoreMessage.Parser.ParseFrom(reply.Payload[length..]);
        Assert.Equal(5, response.Count);
        Assert.Equal(10 + 20 + 30 + 40 + 50, response.Number);
    }

    public static TheoryData<string> MalformedBodies => ["count zero", "count over the window", "length past the end", "bytes after the last message", "no count"];

    [Theory]
    [Trait("Category", "Hostile")]
    [MemberData(nameof(MalformedBodies))]
    public async Task MalformedMessagesFrame_ConnectionEndsAsViolation_ServerServesOn(string malformed)
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            Task<Transaction> call = await OpenClientStreamAsync(raw);
            byte[] message = new CoreMessage { Number = 7 }.ToByteArray();
            byte[] frame = malformed switch
            {
                "count zero" => Patch(MessagesFrame([message]), GrpcFrames.HeadLength, 0, 2),
                "count over the window" => Patch(MessagesFrame([message]), GrpcFrames.HeadLength, GrpcWire.WindowMessages + 1, 2),
                "length past the end" => Patch(MessagesFrame([message, message]), GrpcFrames.HeadLength + 2 + 4 + message.Length, (uint)message.Length + 1, 4),
                "bytes after the last message" => [.. MessagesFrame([message]), 0],
                _ => MessagesFrame([])[..(GrpcFrames.HeadLength + 1)],
            };
            raw.SendOneway(GrpcWire.FrameCode, frame);

            Assert.Equal(ClientDisconnectReason.ProtocolViolation, (await disconnected.WaitAsync(TestTimeouts.Long)).Reason);
            await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(TestTimeouts.Long));
        }

        await GrpcRawPeer.AssertRegionsGoneAsync(server.Name);
        await using PageRangeCallInvoker channel = server.Channel();
        CoreMessage reply = await new CoreTest.CoreTestClient(channel).UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal(2, reply.Number);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task MessagesFramePastTheWindow_ConnectionEndsAsViolation()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        Task<ClientDisconnectedEventArgs> disconnected = GrpcRawPeer.NextDisconnect(server.Server);
        await using (PageRangeConnection raw = await GrpcRawPeer.ConnectAsync(server))
        {
            Task<Transaction> call = await OpenClientStreamAsync(raw);
            // The first message makes the handler sleep: the rest wait unread, and one frame carries one past the window.
            byte[] sleeper = new CoreMessage { DelayMs = 600_000 }.ToByteArray();
            byte[] small = new CoreMessage { Number = 1 }.ToByteArray();
            raw.SendOneway(GrpcWire.FrameCode, MessagesFrame([sleeper]));
            raw.SendOneway(GrpcWire.FrameCode, MessagesFrame([.. Enumerable.Repeat(small, GrpcWire.WindowMessages)]));

            Assert.Equal(ClientDisconnectReason.ProtocolViolation, (await disconnected.WaitAsync(TestTimeouts.Long)).Reason);
            await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(TestTimeouts.Long));
        }

        await GrpcRawPeer.AssertRegionsGoneAsync(server.Name);
    }

    [Fact]
    public async Task ServerStream_FastWriter_SeveralMessagesPerFrame_AllInOrderBeforeTheStatus()
    {
        await using GrpcTestServer server = GrpcTestServer.Start();
        await using PageRangeCallInvoker channel = server.Channel();
        var client = new CoreTest.CoreTestClient(channel);
        const int Count = 2000;
        using global::Grpc.Core.AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = Count, Number = 100 });
        int next = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(next, call.ResponseStream.Current.Number);
            next++;
        }

        Assert.Equal(Count, next);
        Assert.Equal(global::Grpc.Core.StatusCode.OK, call.GetStatus().StatusCode);
        // Frames the client read: fewer than the messages (the writer never waits between messages, so frames fill).
        GrpcClientConnection connection = await channel.GetConnectionAsync(CancellationToken.None).AsTask().WaitAsync(TestTimeouts.Long);
        Assert.InRange(connection.MessageFramesReceived, 1, Count - 1);
    }

    private static async Task<Task<Transaction>> OpenClientStreamAsync(PageRangeConnection raw)
    {
        var head = new GrpcRequestHead(GrpcCallKind.Stream, StreamId, ClientStreamMethod, null, HasMessage: false, []);
        byte[] open = new byte[head.GetSize()];
        head.Write(open);
        Task<Transaction> call = raw.CallAsync(GrpcWire.MethodCode(ClientStreamMethod), open).AsTask();
        using Transaction credit = await raw.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal((GrpcFrameKind.Credit, StreamId), GrpcFrames.ReadHead(credit.Payload));
        return call;
    }

    private static byte[] MessagesFrame(byte[][] messages)
    {
        byte[] frame = new byte[GrpcFrameWriter.BatchHeadLength + messages.Sum(m => GrpcFrameWriter.LengthPrefix + m.Length)];
        GrpcFrames.WriteHead(frame, GrpcFrameKind.Messages, StreamId);
        BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(GrpcFrames.HeadLength), (ushort)messages.Length);
        int offset = GrpcFrameWriter.BatchHeadLength;
        foreach (byte[] message in messages)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(offset), (uint)message.Length);
            message.CopyTo(frame, offset + GrpcFrameWriter.LengthPrefix);
            offset += GrpcFrameWriter.LengthPrefix + message.Length;
        }
        return frame;
    }

    private static byte[] HalfClose()
    {
        byte[] frame = new byte[GrpcFrames.HeadLength];
        GrpcFrames.WriteHead(frame, GrpcFrameKind.HalfClose, StreamId);
        return frame;
    }

    private static byte[] Patch(byte[] frame, int offset, uint value, int width)
    {
        if (width == 2)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(frame.AsSpan(offset), (ushort)value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(offset), value);
        }
        return frame;
    }
}
