using PageRange.Tests.Infrastructure;
using PageRange.Testing;
using PageRange.Transport;

namespace PageRange.Tests.CrossProcess;

/// <summary>
/// Packed oneways between this process and a real TestHost process, both ways: small messages share packs (fewer ring
/// records than messages), mixed with larger ones of their own, and every byte arrives, in order.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class PackedOnewayCrossProcessTests(ITestOutputHelper output)
{
    /// <summary>Stream message sizes cycle 12..1032 bytes: the first 15 of every 61 fit a pack's entry, the rest do not.</summary>
    private const int Count = 30_000;

    [Fact]
    public async Task Receive_PackedStreamFromHost_EveryByteInOrderAndPacked()
    {
        await using TransportHost host = await TransportHost.StartAsync(output);
        host.Process.WriteLine($"send-stream {Count}");
        for (ulong expected = 0; expected < Count; expected++)
        {
            using Transaction transaction = await TransportCallTests.ReceiveBoundedAsync(host.Connection);
            Assert.True(transaction.IsOneway);
            Assert.Equal(expected, StreamMessage.Check(transaction.Payload));
        }
        Assert.Equal($"{Count}", host.Process.ReadUntil("sent: "));
        InboundChannel inbound = host.Connection.Inbound;
        output.WriteLine($"{inbound.Delivered} messages in {inbound.Received} records, {inbound.PacksReceived} packs");
        Assert.Equal((ulong)Count, inbound.Delivered);
        Assert.True(inbound.PacksReceived > 0, "no pack was received");
        Assert.True(inbound.Received < inbound.Delivered, "packs carried no more than one message each");
    }

    [Fact]
    public async Task ReceiveBatch_PackedStreamFromHost_EveryByteInOrderThroughTheLaneAndEveryBufferBack()
    {
        // A real second process's stream drained by ReceiveBatch: its messages (12 B to 1,992 B, packed and not) ride the
        // lane, one slot in turn; every one in order with its bytes, and every buffer and pack goes back to the
        // host's writer (it could not finish 30,000 messages in our region otherwise, and nothing stays live here).
        await using TransportHost host = await TransportHost.StartAsync(output);
        host.Process.WriteLine($"send-stream {Count}");
        var state = new StreamCheck();
        using var bound = new CancellationTokenSource(TestTimeouts.Long);
        await Task.Factory.StartNew(() =>
        {
            while (state.Next < Count && state.Error is null)
            {
                host.Connection.ReceiveBatch(static (state, in transaction) =>
                {
                    ulong? sequence = transaction.IsOneway ? StreamMessage.Check(transaction.Payload) : null;
                    if (sequence != state.Next)
                    {
                        state.Error ??= $"message {state.Next}: got {(sequence is { } got ? got.ToString(System.Globalization.CultureInfo.InvariantCulture) : "a bad payload")}";
                    }
                    state.Next++;
                }, state, PageRangeConnection.MaxReceiveBatch, bound.Token);
            }
        }, bound.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default).WaitAsync(TestTimeouts.Long);

        Assert.Null(state.Error);
        Assert.Equal((ulong)Count, state.Next);
        Assert.Equal($"{Count}", host.Process.ReadUntil("sent: "));
        (long runs, long messages) = host.Connection.LaneCounts;
        InboundChannel inbound = host.Connection.Inbound;
        output.WriteLine($"{messages} of {Count} messages through {runs} lanes; {inbound.Delivered} in {inbound.Received} records, {inbound.PacksReceived} packs");
        Assert.True(messages > Count / 2, $"the lane took {messages} of {Count}");
        Assert.Equal(0, host.Connection.LiveIncomingTransactions);
        Assert.Equal(0, inbound.PackedLive);
        Assert.Equal(inbound.Received, inbound.Freed);
    }

    private sealed class StreamCheck
    {
        internal ulong Next;
        internal string? Error;
    }

    [Fact]
    public async Task SendOneway_PackedStreamToHost_EveryByteInOrderAndPacked()
    {
        await using TransportHost host = await TransportHost.StartAsync(output, null, "--receivers", "2");
        byte[] buffer = new byte[StreamMessage.MaxLength];
        for (ulong sequence = 0; sequence < Count; sequence++)
        {
            Span<byte> message = buffer.AsSpan(0, StreamMessage.LengthOf(sequence));
            StreamMessage.Write(message, sequence);
            host.Connection.SendOneway(TransportHost.Codes.Stream, message);
        }
        (long received, long next, long errors) = await host.WaitForStreamAsync(Count);
        Assert.Equal(0, errors);
        Assert.Equal(Count, received);
        Assert.Equal(Count, next);
        OutboundChannel outbound = host.Connection.Outbound;
        output.WriteLine($"{outbound.PackedSent} packed in {outbound.PacksOpened} packs, {outbound.Sent} records");
        Assert.True(outbound.PacksOpened > 0 && outbound.PackedSent > outbound.PacksOpened);
        Assert.True(outbound.Sent < Count);
    }
}
