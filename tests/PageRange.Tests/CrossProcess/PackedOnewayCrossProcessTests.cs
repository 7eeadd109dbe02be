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
