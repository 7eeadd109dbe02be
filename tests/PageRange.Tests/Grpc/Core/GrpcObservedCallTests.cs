using Google.Protobuf;
using Grpc.Core;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// gRPC calls while someone traces PageRange: they go through the transport's copying path, which observes them. In the
/// metrics collection: the listener is process-wide, and must not make another test's calls (the allocation tests)
/// start activities.
/// </summary>
[Collection(MetricsCollection.Name)]
public sealed class GrpcObservedCallTests
{
    [Fact]
    public async Task AsyncUnary_TracedAndTheServerRegionFullPastTheDeadline_DeadlineExceededNotTheRegionsTimeout()
    {
        // As GrpcUnaryTests' untraced case: the server's region (256 KiB) held by a first call's large request, a second
        // with a 300 ms deadline. The copying send's wait for room knew no deadline: 30 s (these tests' region timeout),
        // then ResourceExhausted.
        using var tracing = new TracingActivityCollector();
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: 256 * 1024);
        var client = grpc.Client;
        ByteString large = ByteString.CopyFrom(new byte[80 * 1024]);
        using var release = new CancellationTokenSource();
        AsyncUnaryCall<CoreMessage> holding = client.UnaryAsync(new CoreMessage { Text = "wait", Data = large }, cancellationToken: release.Token);
        await Poll.WaitUntilAsync(() => grpc.Server.Server.InFlightCalls == 1, "the first call's handler holds its request");

        RpcException late = await Assert.ThrowsAsync<RpcException>(() => client.UnaryAsync(
            new CoreMessage { Text = "late", Data = large }, deadline: DateTime.UtcNow.AddMilliseconds(300)).ResponseAsync.WaitAsync(TestTimeouts.Long));
        Assert.True(late.StatusCode == StatusCode.DeadlineExceeded, $"{late.StatusCode}: {late.Status.Detail}");
        // The client's span went through the copying path and failed as late.
        Assert.Contains(tracing.Stopped, activity => activity.Kind == System.Diagnostics.ActivityKind.Client
            && (string?)activity.GetTagItem("error.type") == typeof(TimeoutException).FullName);

        await release.CancelAsync();
        await Assert.ThrowsAsync<RpcException>(() => holding.ResponseAsync.WaitAsync(TestTimeouts.Long));
        CoreMessage echoed = await client.UnaryAsync(new CoreMessage { Number = 4, Data = large }).ResponseAsync.WaitAsync(TestTimeouts.Long);
        Assert.Equal((5, large.Length), (echoed.Number, echoed.Data.Length));
    }
}
