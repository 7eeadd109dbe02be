using Google.Protobuf;
using Grpc.Core;

namespace PageRange.Benchmarks.Grpc;

/// <summary>The benchmark's service: the same instance answers PageRange and Kestrel clients.</summary>
internal sealed class BenchService : GrpcBench.GrpcBenchBase
{
    public override Task<BenchPayload> Unary(BenchPayload request, ServerCallContext context) => Task.FromResult(request);

    public override async Task Stream(BenchStreamRequest request, IServerStreamWriter<BenchPayload> responseStream, ServerCallContext context)
    {
        var message = new BenchPayload { Data = UnsafeByteOperations.UnsafeWrap(new byte[request.Size]) };
        for (int i = 0; i < request.Count; i++)
        {
            await responseStream.WriteAsync(message, context.CancellationToken);
        }
    }
}
