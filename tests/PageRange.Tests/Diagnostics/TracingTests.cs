using System.Diagnostics;
using System.Diagnostics.Metrics;
using PageRange.Diagnostics;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Serialization;
using PageRange.Tests.Transport;
using PageRange.Transport;
using Xunit.Abstractions;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// The <c>PageRange</c> activity source and the call histograms, in one process. In the metrics collection: the
/// listeners are process-wide, and must not make another test's calls (the allocation tests) start activities.
/// </summary>
[Collection(MetricsCollection.Name)]
public sealed class TracingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ServerCall_ListenerThrowsAsTheServerSpanStops_TheCallIsStillReleased()
    {
        // A broken listener: what it throws as the server's span ends must not keep the call's buffer and its place in
        // flight (found by review: the release came after the span's end, so the call stayed in flight for good and a
        // stop waited out its grace period).
        string name = ControlHandshakeTests.UniqueName();
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == PageRangeTracing.SourceName,
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.Kind == ActivityKind.Server && (string?)activity.GetTagItem("server.address") == name)
                {
                    throw new InvalidOperationException("a broken listener");
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        PageRangeServer server = PageRangeServer.Start(name, builder => builder.Map(3, (call, _) => call.Reply(call.Payload)));
        try
        {
            using var timeout = new CancellationTokenSource(TestTimeouts.Long);
            await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions(), timeout.Token)
                .AsTask().WaitAsync(TestTimeouts.Long);
            for (int i = 0; i < 3; i++)
            {
                using Transaction reply = client.Call(3, [(byte)i], TestTimeouts.Long);
                Assert.Equal([(byte)i], reply.Payload.ToArray());
            }
            await Poll.WaitUntilAsync(() => server.InFlightCalls == 0, "every call released");
            // Nothing in flight: a stop with no deadline ends at once.
            await server.StopAsync().WaitAsync(TestTimeouts.Long);
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    [Fact]
    public async Task ServerCall_WithListener_ClientAndServerSpansShareOneTrace()
    {
        using var collector = new TracingActivityCollector();
        string name = ControlHandshakeTests.UniqueName();
        string? serverTrace = null;
        await using PageRangeServer server = PageRangeServer.Start(name, builder => builder
            .Map(3, (call, _) =>
            {
                serverTrace = Activity.Current?.TraceId.ToHexString();
                call.Reply(call.Payload);
            })
            .Map(4, (_, _) => throw new PageRangeStatusException(CallStatus.NotFound, "nothing here")));
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions(), timeout.Token)
            .AsTask().WaitAsync(TestTimeouts.Long);

        using (Transaction reply = client.Call(3, [1, 2], TestTimeouts.Long))
        {
            Assert.Equal([1, 2], reply.Payload.ToArray());
        }
        RemoteCallException failure = await Assert.ThrowsAsync<RemoteCallException>(
            () => client.CallAsync(4, new byte[] { 1 }, TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));
        Assert.Equal(CallStatus.NotFound, failure.Status);

        Activity[] spans = await WaitForSpansAsync(collector, 4);
        Activity clientSpan = spans.Single(a => a.Kind == ActivityKind.Client && (string?)a.GetTagItem("rpc.method") == "3");
        Activity serverSpan = spans.Single(a => a.Kind == ActivityKind.Server && (string?)a.GetTagItem("rpc.method") == "3");
        output.WriteLine($"client {clientSpan.TraceId}/{clientSpan.SpanId}, server {serverSpan.TraceId} parent {serverSpan.ParentSpanId}");
        Assert.Equal(clientSpan.TraceId, serverSpan.TraceId);
        Assert.Equal(clientSpan.SpanId, serverSpan.ParentSpanId);
        Assert.Equal(clientSpan.TraceId.ToHexString(), serverTrace);
        Assert.Equal("pagerange", clientSpan.GetTagItem("rpc.system"));
        Assert.Equal(name, clientSpan.GetTagItem("server.address"));
        Assert.Equal(name, serverSpan.GetTagItem("server.address"));
        Assert.Equal(ActivityStatusCode.Unset, clientSpan.Status);

        Activity failedClient = spans.Single(a => a.Kind == ActivityKind.Client && (string?)a.GetTagItem("rpc.method") == "4");
        Activity failedServer = spans.Single(a => a.Kind == ActivityKind.Server && (string?)a.GetTagItem("rpc.method") == "4");
        Assert.Equal(ActivityStatusCode.Error, failedClient.Status);
        Assert.Equal(ActivityStatusCode.Error, failedServer.Status);
        Assert.Equal("NotFound", failedClient.GetTagItem("rpc.pagerange.status"));
        Assert.Equal("NotFound", failedServer.GetTagItem("rpc.pagerange.status"));
        Assert.Equal(failedClient.TraceId, failedServer.TraceId);
        // The caller's flow is untouched by the async call's activity.
        Assert.Null(Activity.Current);
    }

    [Fact]
    public async Task TypedCall_AboveTheZeroCopyThreshold_WithListener_HasAClientSpanAndSendsItsTraceContext()
    {
        // A typed call whose estimate reaches the zero-copy threshold was committed straight from a reservation, past the
        // observed path: no client span, no trace context for the server, no metrics (found by review).
        using var collector = new TracingActivityCollector();
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        const int Calls = 3;
        Task<ActivityTraceId[]> serving = Task.Run(() =>
        {
            var traces = new ActivityTraceId[Calls];
            for (int i = 0; i < Calls; i++)
            {
                using Transaction call = pair.Server.Receive();
                traces[i] = call.TraceContext.TraceId;
                call.Reply(call.Deserialize<TracedSizedBlob>().Data.Length);
            }
            return traces;
        });
        // The first sets the estimate (2 KiB and more): the others would be reserved.
        var request = new TracedSizedBlob(new byte[2000]);
        Assert.Equal(2000, pair.Client.Call<TracedSizedBlob, int>(request, timeout: TestTimeouts.Long));
        Assert.Equal(2000, pair.Client.Call<TracedSizedBlob, int>(request, timeout: TestTimeouts.Long));
        Assert.Equal(2000, await pair.Client.CallAsync<TracedSizedBlob, int>(request, timeout: TestTimeouts.Long).AsTask().WaitAsync(TestTimeouts.Long));

        ActivityTraceId[] serverTraces = await serving.WaitAsync(TestTimeouts.Long);
        Activity[] clientSpans = [.. (await WaitForSpansAsync(collector, Calls)).Where(a => a.Kind == ActivityKind.Client)];
        Assert.Equal(Calls, clientSpans.Length);
        Assert.All(serverTraces, trace => Assert.NotEqual(default, trace));
        Assert.Equal(clientSpans.Select(a => a.TraceId.ToHexString()).Order(), serverTraces.Select(t => t.ToHexString()).Order());
    }

    [Fact]
    public async Task Call_NoListener_StartsNothingAndSendsNoMetadata()
    {
        await using ConnectionPair pair = await ConnectionPair.CreateAsync();
        using var parent = new Activity("outside").Start();
        Task serving = Task.Run(() =>
        {
            using Transaction call = pair.Server.Receive();
            Assert.Equal(0, call.Slot.Record.MetadataLength);
            Assert.Equal(default, call.TraceContext);
            call.Reply([]);
        });
        using (Transaction reply = pair.Client.Call(1, [1], TestTimeouts.Long))
        {
            Assert.Same(parent, Activity.Current);
        }
        await serving.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Calls_WithMeterListener_RecordDurationAndSizeHistograms()
    {
        var recorded = new List<(string Name, double Value, string? Status)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == PageRangeMetrics.MeterName && instrument.Name.StartsWith("rpc.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        void Keep(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? status = null;
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == "rpc.pagerange.status")
                {
                    status = (string?)tag.Value;
                }
            }
            lock (recorded)
            {
                recorded.Add((instrument.Name, value, status));
            }
        }
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Keep(i, v, t));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Keep(i, v, t));
        listener.Start();

        string name = ControlHandshakeTests.UniqueName();
        await using PageRangeServer server = PageRangeServer.Start(name, builder => builder.Map(3, (call, _) => call.Reply(new byte[10])));
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, ConnectionPair.DefaultOptions(), timeout.Token)
            .AsTask().WaitAsync(TestTimeouts.Long);
        using (Transaction reply = client.Call(3, new byte[100], TestTimeouts.Long))
        {
            Assert.Equal(10, reply.Length);
        }
        Assert.Throws<RemoteCallException>(() => client.Call(99, [1], TestTimeouts.Long));
        // The server records when its handler's call ends, just after the reply: wait for it.
        using var waited = new CancellationTokenSource(TestTimeouts.Long);
        while (true)
        {
            lock (recorded)
            {
                if (recorded.Count(r => r.Name == "rpc.server.call.duration") >= 2)
                {
                    break;
                }
            }
            await Task.Delay(20, waited.Token);
        }
        lock (recorded)
        {
            foreach (var r in recorded)
            {
                output.WriteLine($"{r.Name} {r.Value} {r.Status}");
            }
            Assert.Contains(recorded, r => r.Name == "rpc.client.call.duration" && r.Status == "Ok" && r.Value > 0);
            Assert.Contains(recorded, r => r.Name == "rpc.client.call.duration" && r.Status == "Unimplemented");
            Assert.Contains(recorded, r => r.Name == "rpc.client.request.size" && r.Status == "Ok" && r.Value == 100);
            Assert.Contains(recorded, r => r.Name == "rpc.client.response.size" && r.Status == "Ok" && r.Value == 10);
            Assert.Contains(recorded, r => r.Name == "rpc.server.call.duration" && r.Status == "Ok" && r.Value > 0);
            Assert.Contains(recorded, r => r.Name == "rpc.server.call.duration" && r.Status == "Unimplemented");
            Assert.Contains(recorded, r => r.Name == "rpc.server.request.size" && r.Status == "Ok" && r.Value == 100);
        }
    }

    private static async Task<Activity[]> WaitForSpansAsync(TracingActivityCollector collector, int count)
    {
        using var timeout = new CancellationTokenSource(TestTimeouts.Long);
        while (collector.Stopped.Count < count)
        {
            await Task.Delay(20, timeout.Token);
        }
        return [.. collector.Stopped];
    }
}
