using PageRange.Tests.Diagnostics;

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
        // GrpcUnaryTests' case through the copying send, whose wait for room knew no deadline.
        using var tracing = new TracingActivityCollector();
        await using GrpcTestClient grpc = GrpcTestClient.Start(regionSize: GrpcUnaryTests.RegionFullTestSize);
        await GrpcUnaryTests.AssertDeadlineEndsTheWaitForRoomAsync(grpc);
        // The late call's client span went through the copying path and failed as late.
        Assert.Contains(tracing.Stopped, activity => activity.Kind == System.Diagnostics.ActivityKind.Client
            && (string?)activity.GetTagItem("error.type") == typeof(TimeoutException).FullName);
    }
}
