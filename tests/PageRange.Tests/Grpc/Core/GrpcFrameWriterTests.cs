using System.Diagnostics;
using Grpc.Core;
using PageRange.Grpc;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Transport;

namespace PageRange.Tests.Grpc.Core;

/// <summary>A stream's frame writer when the peer's region is full: the call's deadline and token end its wait for room.</summary>
public sealed class GrpcFrameWriterTests
{
    /// <summary>The region's timeout in these tests: a wait that ends well before it ended by the call, not by the region.</summary>
    internal static readonly TimeSpan RegionFullTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How long a wait for room that the call ends may take on a slow, shared machine: half the region's timeout.</summary>
    internal static readonly TimeSpan WellBeforeTheRegionsTimeout = TimeSpan.FromSeconds(15);

    private static readonly Marshaller<byte[]> s_bytes = Marshallers.Create(static (byte[] message) => message, static bytes => bytes);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task WriteWithCredit_PeerRegionFullUntilTheCallEnds_EndsThenWithTheCreditBackNothingReservedAndTheWriterUsable(bool byDeadline)
    {
        PageRangeOptions options = ConnectedPair.SmallOptions();
        options.RegionFullTimeout = RegionFullTimeout;
        await using ConnectedPair pair = await ConnectedPair.CreateAsync(options);
        using var cancel = new CancellationTokenSource();
        DateTimeOffset? deadline = byDeadline ? DateTimeOffset.UtcNow.AddMilliseconds(500) : null;
        var writer = new GrpcFrameWriter(pair.Client, streamId: 1, deadline, cancel.Token);
        var gate = new GrpcCreditGate(GrpcWire.WindowMessages, GrpcWire.WindowBytes);
        // The whole oneway quota, held: the writer's frame finds no room.
        ReservedBuffer filler = pair.Client.Reserve((int)pair.Client.MaxOnewayMessageSize, oneway: true);
        long failedBefore = pair.Client.OutboundStats.FailedReservations;

        Assert.True(gate.TryTake());
        var clock = Stopwatch.StartNew();
        Task write = Task.Run(() => writer.WriteWithCredit(gate, s_bytes, new byte[100]));
        await Poll.WaitUntilAsync(() => pair.Client.OutboundStats.FailedReservations > failedBefore || write.IsCompleted, "the frame found no room");
        if (!byDeadline)
        {
            await cancel.CancelAsync();
        }
        Exception? error = await Record.ExceptionAsync(() => write.WaitAsync(WellBeforeTheRegionsTimeout));

        Assert.True(byDeadline ? error is TimeoutException : error is OperationCanceledException, $"{error}");
        Assert.True(clock.Elapsed < WellBeforeTheRegionsTimeout, $"the wait for room took {clock.Elapsed}");
        // The message's credit is the writer's again, and only the filler is reserved: the failed frame went back.
        Assert.Equal(GrpcWire.WindowMessages, gate.Messages);
        Assert.Equal(1, pair.Client.OutboundLiveBuffers);

        // Room is back: the writer (its lock let go) sends the next message.
        filler.Dispose();
        Assert.True(gate.TryTake());
        writer.WriteWithCredit(gate, s_bytes, [1, 2, 3]);
        writer.Flush();
        using var received = new CancellationTokenSource(TestTimeouts.Long);
        using Transaction frame = pair.Server.Receive(received.Token);
        Assert.Equal(GrpcWire.FrameCode, frame.Code);
        Assert.Equal(1, writer.FramesSent);
        writer.Close(send: false);
    }
}
