using Google.Protobuf;
using Grpc.Core;
using PageRange.Diagnostics;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Grpc.Core.Protos;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Grpc.Core;

/// <summary>
/// gRPC streaming calls over a server's <see cref="PageRange.Server.PageRangeServerOptions.MaxConcurrentCallsPerClient"/>:
/// a streaming call holds its slot for its whole life and waits for its client's frames (oneway messages), which the
/// session keeps receiving while the client's further calls wait for a slot.
/// </summary>
public sealed class GrpcCallLimitTests
{
    [Fact]
    public async Task ClientStream_MoreCallsThanTheLimit_EachWaitingForItsFrames_AllComplete()
    {
        const int limit = 2;
        const int calls = 5;
        const int messages = 20;
        using var log = new LogCapture();
        await using GrpcTestClient grpc = GrpcTestClient.Start(configureOptions: options =>
        {
            options.MaxConcurrentCallsPerClient = limit;
            options.ConnectionOptions.LoggerFactory = log.Factory;
        });
        var client = grpc.Client;
        var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        // Each call on a task of its own: a call beyond the limit waits for credit (its handler has not started) until
        // one of the first two ends, and those end only once their frames are read.
        async Task<CoreMessage> RunAsync(int call)
        {
            using AsyncClientStreamingCall<CoreMessage, CoreMessage> stream = client.ClientStream();
            for (int i = 0; i < messages; i++)
            {
                await stream.RequestStream.WriteAsync(new CoreMessage { Data = ByteString.CopyFrom(new byte[call + 1]) }).WaitAsync(TestTimeouts.Long);
                // The running calls hold their slots until every call is open (the others queued behind them).
                await opened.Task.WaitAsync(TestTimeouts.Long);
            }
            await stream.RequestStream.CompleteAsync().WaitAsync(TestTimeouts.Long);
            CoreMessage reply = await stream.ResponseAsync.WaitAsync(TestTimeouts.Long);
            Assert.Equal(StatusCode.OK, stream.GetStatus().StatusCode);
            return reply;
        }

        Task<CoreMessage[]> all = Task.WhenAll(Enumerable.Range(0, calls).Select(call => Task.Run(() => RunAsync(call))));
        // The calls beyond the limit are queued, the first ones wait for their next frames.
        await Poll.WaitUntilAsync(() => log.WithId(PageRangeLogEvents.ClientCallsQueued).Length > 0 && grpc.Server.Server.InFlightCalls >= calls,
            "the calls beyond the limit are queued");
        opened.SetResult();
        CoreMessage[] replies = await all.WaitAsync(TestTimeouts.Long);
        for (int call = 0; call < calls; call++)
        {
            Assert.Equal(messages, replies[call].Count);
            Assert.Equal(messages * (call + 1), replies[call].Number);
        }
        await Poll.WaitUntilAsync(() => grpc.Server.Server.InFlightCalls == 0, "every call is counted out");
    }
}
