using System.Diagnostics;
using System.Globalization;
using PageRange.Diagnostics;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Tracing and call metadata across processes: <c>tracing-serve &lt;name&gt;</c> runs a <see cref="PageRangeServer"/> on
/// <c>name</c> with an <see cref="ActivityListener"/> on the <c>PageRange</c> source, prints <c>listening: ok</c>, and for
/// each call of code 1 prints <c>seen: trace=&lt;trace id&gt; parent=&lt;parent span id&gt; kind=&lt;kind&gt;
/// deadline=&lt;UTC ticks or none&gt; meta=&lt;k=v;...&gt;</c> and replies with the payload. It stops when stdin closes.
/// </summary>
internal static class TracingScenarios
{
    public static int Serve(string[] args)
    {
        string name = args[1];
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == PageRangeTracing.SourceName,
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
        };
        ActivitySource.AddActivityListener(listener);
        var options = new PageRangeServerOptions();
        PageRangeServer server = PageRangeServer.Start(name, options, builder => builder.Map(1, (call, context) =>
        {
            Activity? activity = Activity.Current;
            string meta = string.Join(';', context.Metadata.Select(pair => $"{pair.Key}={pair.Value}"));
            string deadline = context.Deadline is { } at ? at.UtcTicks.ToString(CultureInfo.InvariantCulture) : "none";
            Console.WriteLine(
                $"seen: trace={activity?.TraceId.ToHexString() ?? "none"} parent={activity?.ParentSpanId.ToHexString() ?? "none"} " +
                $"kind={activity?.Kind.ToString() ?? "none"} deadline={deadline} meta={meta}");
            call.Reply(call.Payload);
        }));
        try
        {
            Console.WriteLine("listening: ok");
            // The test closes stdin (or kills this process) when it is done.
            while (Console.ReadLine() is not null)
            {
            }
            return 0;
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
