using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>Credits: a slow reader holds its writer back, and what is buffered stays within the window.</summary>
public sealed class GrpcFlowControlTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ClientStream_100MiBToASlowReader_WriterStaysWithinTheWindowAndTheRegionStaysSmall()
    {
        const int MessageSize = 64 * 1024;
        const int Messages = 100 * 1024 * 1024 / MessageSize;
        // A region far larger than the window: without credits the writer would run ahead into it.
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: 64L << 20);
        var client = grpc.Client;
        long maxResident = 0;
        grpc.Service.OnClientMessageRead = () =>
        {
            long resident = grpc.Service.LastConnection!.Inbound.Region.ResidentBytes;
            long seen;
            while (resident > (seen = Interlocked.Read(ref maxResident)) && Interlocked.CompareExchange(ref maxResident, resident, seen) != seen)
            {
            }
        };
        ByteString data = ByteString.CopyFrom(new byte[MessageSize]);
        long maxAhead = 0;

        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = client.ClientStream();
        for (int i = 0; i < Messages; i++)
        {
            // The reader sleeps a little after every message: it is the slow side.
            await call.RequestStream.WriteAsync(new CoreMessage { Data = data, DelayMs = 1 }).WaitAsync(TestTimeouts.Long);
            maxAhead = Math.Max(maxAhead, i + 1 - grpc.Service.ClientMessagesRead);
        }
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
        CoreMessage reply = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);

        output.WriteLine($"writer ahead of the reader by at most {maxAhead} messages; server region resident at most {maxResident >> 10} KiB");
        Assert.Equal((long)Messages * MessageSize, reply.Number);
        // Written means sent under a credit; credits come back only for messages read (the reader's counter moves just
        // after its read returns: one more).
        Assert.InRange(maxAhead, 1, GrpcWire.WindowMessages + 1);
        // The window (1 MiB) plus the region's rings and header, never the 64 MiB the region could hold.
        Assert.InRange(maxResident, 1, 4L << 20);
    }

    [Fact]
    public async Task ServerStream_SlowClientReader_ServerWriterStaysWithinTheWindow()
    {
        const int Messages = 200;
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: 64L << 20);
        var client = grpc.Client;
        long maxAhead = 0;

        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = Messages, Number = 64 * 1024 });
        int read = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            read++;
            maxAhead = Math.Max(maxAhead, grpc.Service.ServerMessagesWritten - read);
            await Task.Delay(2);
        }

        output.WriteLine($"server writer ahead of the client reader by at most {maxAhead} messages");
        Assert.Equal(Messages, read);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        // The handler counts a message once its write returned: sent under a credit, and credits come back only for
        // messages the client read. 64 KiB messages: the byte window (one message may start with some credit left)
        // holds the writer back long before the message window.
        Assert.InRange(maxAhead, 1, (GrpcWire.WindowBytes / (64 * 1024)) + 1);
    }

    [Fact]
    public async Task ServerStream_SmallMessagesToAReaderThatStops_WriterStopsAtTheMessageWindow()
    {
        const int Messages = 3 * GrpcWire.WindowMessages;
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = Messages, Number = 16 });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        // The reader stops after one message: the writer goes on until its credits run out, then waits. Wait until
        // the count settles (it reaches the window, or stays short of it for a while if something held it back).
        long written = -1;
        for (int settled = 0; settled < 10;)
        {
            await Task.Delay(50);
            long now = grpc.Service.ServerMessagesWritten;
            settled = now == written ? settled + 1 : 0;
            written = now;
        }
        output.WriteLine($"a stopped reader let the server write {written} small messages");
        // Small messages: the message window, not the byte window, is what stops the writer; and it does stop.
        Assert.InRange(written, 1, GrpcWire.WindowMessages);

        int read = 1;
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(read, call.ResponseStream.Current.Number);
            read++;
        }
        Assert.Equal(Messages, read);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task Inbox_WriterPastTheWindow_Refused()
    {
        var inbox = new GrpcInbox<object>(static (_, _) => { });
        for (int i = 0; i < GrpcWire.WindowMessages; i++)
        {
            Assert.True(inbox.TryAdd(new object(), 10));
        }

        Assert.False(inbox.TryAdd(new object(), 10));
        Assert.True(await inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        // A read that has not been granted back yet still counts against the writer.
        Assert.False(inbox.TryAdd(new object(), 10));
    }

    [Fact]
    public async Task Inbox_EndedAfterQueuedWithAStatus_ReadsEveryQueuedMessageThenThrowsTheStatus()
    {
        var inbox = new GrpcInbox<string>(static (_, _) => { });
        Assert.True(inbox.TryAdd("a", 1));
        Assert.True(inbox.TryAdd("b", 1));
        var status = new RpcException(new Status(StatusCode.DataLoss, "after two"));

        inbox.EndAfterQueued(status);

        Assert.True(await inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Equal("a", inbox.Current);
        Assert.True(await inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Equal("b", inbox.Current);
        RpcException error = await Assert.ThrowsAsync<RpcException>(() => inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        Assert.Same(status, error);
    }

    [Fact]
    public async Task Inbox_EndedAfterQueuedThenAtOnce_ThrowsWithoutTheQueuedMessages()
    {
        var inbox = new GrpcInbox<string>(static (_, _) => { });
        Assert.True(inbox.TryAdd("a", 1));
        var status = new RpcException(new Status(StatusCode.DataLoss, "after one"));
        inbox.EndAfterQueued(status);

        // The call was cancelled meanwhile: reads end at once.
        inbox.End(new RpcException(new Status(StatusCode.Cancelled, "cancelled")));

        await Assert.ThrowsAsync<RpcException>(() => inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
    }

    [Fact]
    public async Task Inbox_Reads_GrantCreditsBackInQuarterWindowBatches()
    {
        var grants = new List<(int Messages, int Bytes)>();
        var inbox = new GrpcInbox<object>((messages, bytes) => grants.Add((messages, bytes)));
        for (int i = 0; i < GrpcWire.WindowMessages; i++)
        {
            Assert.True(inbox.TryAdd(new object(), 100));
        }

        for (int i = 0; i < GrpcWire.WindowMessages; i++)
        {
            Assert.True(await inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));
        }

        Assert.Equal(4, grants.Count);
        Assert.All(grants, static grant => Assert.Equal((GrpcWire.WindowMessages / 4, 100 * GrpcWire.WindowMessages / 4), grant));
        // Every credit granted back: the writer may fill the window again.
        for (int i = 0; i < GrpcWire.WindowMessages; i++)
        {
            Assert.True(inbox.TryAdd(new object(), 100));
        }
    }

    [Fact]
    public async Task Inbox_LargeMessages_ByteWindowGrantsSooner()
    {
        var grants = new List<(int Messages, int Bytes)>();
        var inbox = new GrpcInbox<object>((messages, bytes) => grants.Add((messages, bytes)));
        Assert.True(inbox.TryAdd(new object(), GrpcWire.WindowBytes / 2));
        Assert.True(inbox.TryAdd(new object(), GrpcWire.WindowBytes / 2));
        // The byte window is used up: a third is past it.
        Assert.False(inbox.TryAdd(new object(), 1));

        Assert.True(await inbox.MoveNextAsync(CancellationToken.None).WaitAsync(TestTimeouts.Long));

        Assert.Equal([(1, GrpcWire.WindowBytes / 2)], grants);
    }

    [Fact]
    public async Task Streams_MessagesLargerThanTheWindow_SeveralInARowBothWaysOnOneConnection()
    {
        // Half again the byte window: each one is sent alone, and its reader grants all of it back at once.
        const int Size = GrpcWire.WindowBytes * 3 / 2;
        const int Messages = 3;
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;
        GrpcClientConnection connection = await grpc.ConnectionAsync();

        using (AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Count = Messages, Number = Size }))
        {
            int read = 0;
            while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
            {
                Assert.Equal(read, call.ResponseStream.Current.Number);
                Assert.Equal(Size, call.ResponseStream.Current.Data.Length);
                read++;
            }
            Assert.Equal(Messages, read);
            Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
        }
        ByteString data = ByteString.CopyFrom(new byte[Size]);
        using (AsyncClientStreamingCall<CoreMessage, CoreMessage> call = client.ClientStream())
        {
            for (int i = 0; i < Messages; i++)
            {
                await call.RequestStream.WriteAsync(new CoreMessage { Data = data }).WaitAsync(TestTimeouts.Long);
            }
            await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
            CoreMessage reply = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);
            Assert.Equal((long)Messages * Size, reply.Number);
        }

        // Neither side took a grant for a protocol violation: the same connection serves the next call.
        Assert.Equal(2, (await client.UnaryAsync(new CoreMessage { Number = 1 }).ResponseAsync.WaitAsync(TestTimeouts.Long)).Number);
        Assert.Same(connection, await grpc.ConnectionAsync());
        Assert.True(connection.IsAlive);
    }

    [Fact]
    public void CreditGate_OneMessageLargerThanTheWindow_ItsGrantIsTakenButNotAByteMore()
    {
        var gate = new GrpcCreditGate(GrpcWire.WindowMessages, GrpcWire.WindowBytes);
        Assert.True(gate.TryTake());
        gate.Consume(GrpcWire.WindowBytes * 3 / 2);
        // The byte credit is below zero: the writer waits.
        Assert.False(gate.TryTake());

        Assert.False(gate.TryGrant(1, (GrpcWire.WindowBytes * 3 / 2) + 1));
        Assert.False(gate.TryGrant(1, -1));
        Assert.True(gate.TryGrant(1, GrpcWire.WindowBytes * 3 / 2));
        Assert.True(gate.TryTake());
    }

    [Fact]
    public async Task ServerStream_WritesFailingPastTheWindow_EachGivesItsCreditBackAndTheNextGoesThrough()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        var client = grpc.Client;

        // The handler first fails twice the window's writes (each message too large for the client's region).
        using AsyncServerStreamingCall<CoreMessage> call = client.ServerStream(new CoreMessage { Text = "too-large-first", Count = 2, Number = 16 });

        int read = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None).WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(read, call.ResponseStream.Current.Number);
            read++;
        }
        Assert.Equal(2, read);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Fact]
    public async Task ClientStream_WritesFailingPastTheWindow_EachGivesItsCreditBackAndTheNextGoesThrough()
    {
        await using GrpcTestClient grpc = GrpcTestClient.Start();
        // The service's own method, with a request marshaller that fails on some messages.
        var method = new Method<CoreMessage, CoreMessage>(MethodType.ClientStreaming, "pagerange.grpc.coretest.CoreTest", "ClientStream",
            Marshallers.Create<CoreMessage>(static message => message.Text == "poison" ? throw new InvalidOperationException("poison") : message.ToByteArray(), CoreMessage.Parser.ParseFrom),
            Marshallers.Create<CoreMessage>(static message => message.ToByteArray(), CoreMessage.Parser.ParseFrom));

        using AsyncClientStreamingCall<CoreMessage, CoreMessage> call = grpc.Channel.AsyncClientStreamingCall(method, null, new CallOptions());
        for (int i = 0; i < 2 * GrpcWire.WindowMessages; i++)
        {
            RpcException error = await Assert.ThrowsAsync<RpcException>(() => call.RequestStream.WriteAsync(new CoreMessage { Text = "poison" }).WaitAsync(TestTimeouts.Long));
            Assert.Equal(StatusCode.Internal, error.StatusCode);
        }
        await call.RequestStream.WriteAsync(new CoreMessage { Data = ByteString.CopyFromUtf8("good") }).WaitAsync(TestTimeouts.Long);
        await call.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);

        CoreMessage reply = await call.ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal((4, 1), (reply.Number, reply.Count));
    }

    [Fact]
    public async Task CreditGate_WaitsForAGrant_AndRefusesAGrantPastTheWindow()
    {
        var gate = new GrpcCreditGate(0, 0);
        ValueTask take = gate.TakeAsync(CancellationToken.None);
        Assert.False(take.IsCompleted);

        Assert.True(gate.TryGrant(GrpcWire.WindowMessages, GrpcWire.WindowBytes));
        await take.AsTask().WaitAsync(TestTimeouts.Long);
        gate.Consume(100);

        Assert.Equal(GrpcWire.WindowMessages - 1, gate.Messages);
        Assert.False(gate.TryGrant(2, 100));
        Assert.True(gate.TryGrant(1, 100));
    }

    [Fact]
    public async Task CreditGate_Failed_TakersGetTheError()
    {
        var gate = new GrpcCreditGate(0, 0);
        ValueTask take = gate.TakeAsync(CancellationToken.None);

        gate.Fail(new RpcException(new Status(StatusCode.Aborted, "gone")));

        RpcException error = await Assert.ThrowsAsync<RpcException>(() => take.AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(StatusCode.Aborted, error.StatusCode);
    }
}
