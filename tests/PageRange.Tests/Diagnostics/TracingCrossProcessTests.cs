using System.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;
using Xunit.Abstractions;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// A call between two processes is one trace: the TestHost serves with its own <see cref="ActivityListener"/> and prints
/// the trace it saw, with the deadline and metadata the call carried.
/// </summary>
[Collection(CrossProcessCollection.Name)]
public sealed class TracingCrossProcessTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Call_ToAnotherProcess_ServerSpanJoinsTheClientTraceAndSeesMetadata()
    {
        using var collector = new TracingActivityCollector();
        string name = ControlHandshakeTests.UniqueName();
        using TestHostProcess host = TestHostProcess.Start(output, "tracing-serve", name);
        try
        {
            host.ReadUntil("listening: ");
            using var timeout = new CancellationTokenSource(TestTimeouts.Long);
            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions(), timeout.Token)
                .AsTask().WaitAsync(TestTimeouts.Long);
            DateTimeOffset deadline = DateTimeOffset.UtcNow.AddMinutes(2);
            var options = new PageRangeCallOptions { Deadline = deadline, Metadata = [new("tenant", "blue"), new("attempt", "1")] };
            string clientTrace;
            string clientSpan;
            using (var parent = new Activity("test-root").Start())
            {
                using (Transaction reply = await client.CallAsync(1, new byte[] { 4, 2 }, options, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long))
                {
                    Assert.Equal([4, 2], reply.Payload.ToArray());
                }
                Activity span = Assert.Single(collector.Stopped, a => a.Kind == ActivityKind.Client);
                Assert.Equal(parent.TraceId, span.TraceId);
                clientTrace = span.TraceId.ToHexString();
                clientSpan = span.SpanId.ToHexString();
            }
            string seen = host.ReadUntil("seen: ");
            output.WriteLine($"client trace {clientTrace} span {clientSpan}; server: {seen}");
            Assert.Contains($"trace={clientTrace} ", seen, StringComparison.Ordinal);
            Assert.Contains($"parent={clientSpan} ", seen, StringComparison.Ordinal);
            Assert.Contains("kind=Server ", seen, StringComparison.Ordinal);
            Assert.Contains($"deadline={deadline.UtcTicks} ", seen, StringComparison.Ordinal);
            Assert.EndsWith("meta=tenant=blue;attempt=1", seen, StringComparison.Ordinal);
        }
        finally
        {
            host.Kill();
        }
    }
}
