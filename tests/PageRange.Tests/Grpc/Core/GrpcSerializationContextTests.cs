using Google.Protobuf;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>Serializing straight into the peer's region: an exact reservation when the length is announced, one copy otherwise.</summary>
public sealed class GrpcSerializationContextTests
{
    private const int Head = 9;

    private static readonly CoreMessage s_message = new() { Text = "hello", Number = 12345, Data = ByteString.CopyFrom(new byte[3000]) };

    /// <summary>As protobuf's generated marshallers do: announce the length, then write.</summary>
    private static readonly Marshaller<CoreMessage> s_announcing = Marshallers.Create<CoreMessage>(
        static (message, context) =>
        {
            context.SetPayloadLength(message.CalculateSize());
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        static context => CoreMessage.Parser.ParseFrom(context.PayloadAsReadOnlySequence()));

    private static readonly Marshaller<CoreMessage> s_silent = Marshallers.Create<CoreMessage>(
        static (message, context) =>
        {
            message.WriteTo(context.GetBufferWriter());
            context.Complete();
        },
        static context => CoreMessage.Parser.ParseFrom(context.PayloadAsReadOnlySequence()));

    private static readonly Marshaller<CoreMessage> s_legacy = Marshallers.Create(
        static (CoreMessage message) => message.ToByteArray(), static bytes => CoreMessage.Parser.ParseFrom(bytes));

    [Fact]
    public async Task Oneway_MarshallerAnnouncesLength_ExactReservationNoFallback()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using GrpcSerializationContext context = GrpcSerializationContext.ForOneway(pair.Client);

        context.Serialize(s_announcing, s_message, Head);

        Assert.False(context.UsedFallback);
        Assert.Equal(Head + s_message.CalculateSize(), context.Reserved.MaxSize);
        await CommitAndCheckAsync(pair, context);
    }

    [Fact]
    public async Task Oneway_MarshallerWritesWithoutLength_OneCopyIntoAnExactReservation()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using GrpcSerializationContext context = GrpcSerializationContext.ForOneway(pair.Client);

        context.Serialize(s_silent, s_message, Head);

        Assert.True(context.UsedFallback);
        Assert.Equal(Head + s_message.CalculateSize(), context.Reserved.MaxSize);
        await CommitAndCheckAsync(pair, context);
    }

    [Fact]
    public async Task Oneway_ByteArrayMarshaller_CopiedIntoAnExactReservation()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using GrpcSerializationContext context = GrpcSerializationContext.ForOneway(pair.Client);

        context.Serialize(s_legacy, s_message, Head);

        Assert.Equal(Head + s_message.CalculateSize(), context.Reserved.MaxSize);
        await CommitAndCheckAsync(pair, context);
    }

    [Fact]
    public void Array_MarshallerAnnouncesLength_WrittenIsHeadThenMessage()
    {
        using GrpcSerializationContext context = GrpcSerializationContext.ForArray();

        context.Serialize(s_announcing, s_message, Head);

        Assert.Equal(Head + s_message.CalculateSize(), context.Written.Length);
        Assert.Equal(s_message, CoreMessage.Parser.ParseFrom(context.Written.Span[Head..]));
    }

    [Fact]
    public async Task Oneway_MessageLargerThanThePeersRegion_ResourceExhausted()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        using GrpcSerializationContext context = GrpcSerializationContext.ForOneway(pair.Client);
        var huge = new CoreMessage { Data = ByteString.CopyFrom(new byte[1 << 20]) };

        RpcException error = Assert.Throws<RpcException>(() => context.Serialize(s_announcing, huge, Head));

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
    }

    [Fact]
    public void Marshaller_Throws_Internal()
    {
        using GrpcSerializationContext context = GrpcSerializationContext.ForArray();
        Marshaller<CoreMessage> failing = Marshallers.Create<CoreMessage>(static _ => throw new FormatException("no"), static _ => new CoreMessage());

        RpcException error = Assert.Throws<RpcException>(() => context.Serialize(failing, s_message, Head));

        Assert.Equal(StatusCode.Internal, error.StatusCode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Call_WithDeadline_BlockThenHeadThenMessageInOneReservation_ReceiverSeesDeadlineAndExactPayload(bool silentMarshaller)
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        var deadline = new DateTimeOffset(2099, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var options = new PageRangeCallOptions { Deadline = deadline };
        using GrpcSerializationContext context = GrpcSerializationContext.ForCall(pair.Client, options);

        context.Serialize(silentMarshaller ? s_silent : s_announcing, s_message, Head);

        Assert.True(context.IsReserved);
        Assert.Equal(silentMarshaller, context.UsedFallback);
        Assert.True(context.HeadOffset > 0, "the deadline's metadata block comes first");
        Assert.Equal(context.HeadOffset + Head + s_message.CalculateSize(), context.TotalLength);
        context.Reserved.Span.Slice(context.HeadOffset, Head).Fill(0xAB);
        Task<Transaction> call = pair.Client.CommitCallAsync(context.Reserved, 42, context.HeadOffset, options, TestTimeouts.Long, CancellationToken.None).AsTask();
        using (Transaction received = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal(deadline, received.Deadline);
            Assert.Equal(Head + s_message.CalculateSize(), received.Length);
            Assert.True(received.Payload[..Head].IndexOfAnyExcept((byte)0xAB) < 0);
            Assert.Equal(s_message, GrpcDeserializationContext.Deserialize(s_announcing, received.Memory[Head..], "test"));
            received.Reply([7]);
        }
        using Transaction reply = await call.WaitAsync(TestTimeouts.Long);
        Assert.Equal([7], reply.Payload.ToArray());
    }

    [Fact]
    public async Task Call_DeadlinePassed_NothingSentAndTheReservationGoesBack()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        var options = new PageRangeCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(-1) };
        int liveBefore = pair.Client.OutboundLiveBuffers;
        using (GrpcSerializationContext context = GrpcSerializationContext.ForCall(pair.Client, options))
        {
            context.Serialize(s_announcing, s_message, Head);
            Assert.Throws<TimeoutException>(() => pair.Client.CommitCall(context.Reserved, 42, context.HeadOffset, options, TestTimeouts.Long, CancellationToken.None));
        }

        Assert.Equal(liveBefore, pair.Client.OutboundLiveBuffers);
    }

    private static async Task CommitAndCheckAsync(ConnectedPair pair, GrpcSerializationContext context)
    {
        context.Reserved.Span[..Head].Fill(0xAB);
        context.Reserved.CommitOneway(42, context.TotalLength);
        using Transaction received = await pair.Server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(Head + s_message.CalculateSize(), received.Length);
        Assert.True(received.Payload[..Head].IndexOfAnyExcept((byte)0xAB) < 0);
        Assert.Equal(s_message, GrpcDeserializationContext.Deserialize(s_announcing, received.Memory[Head..], "test"));
    }
}
