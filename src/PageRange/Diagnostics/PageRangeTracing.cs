using System.Diagnostics;
using System.Globalization;

namespace PageRange.Diagnostics;

/// <summary>
/// The <c>PageRange</c> activity source: a client span per call (<c>Call</c>/<c>CallAsync</c>) and a server span per
/// dispatched call, joined into one trace across processes by the W3C trace context the call carries in its metadata
/// block. Subscribe with <c>AddSource(PageRangeTracing.SourceName)</c> in OpenTelemetry, or any
/// <see cref="ActivityListener"/>.
/// </summary>
/// <remarks>
/// Tags after OpenTelemetry's RPC conventions: <c>rpc.system</c> = <c>pagerange</c>, <c>rpc.method</c> = the code,
/// <c>server.address</c> = the listener's name, and on failure <c>error.type</c> and <c>rpc.pagerange.status</c> with the
/// activity's status set to <see cref="ActivityStatusCode.Error"/>. With no listener nothing is started, sent or
/// allocated.
/// </remarks>
public static class PageRangeTracing
{
    /// <summary>The activity source's name: <c>PageRange</c>.</summary>
    public const string SourceName = "PageRange";

    internal static readonly ActivitySource Source = new(SourceName, typeof(PageRangeTracing).Assembly.GetName().Version?.ToString());

    /// <summary>Starts a client span for a call of <paramref name="code"/> to <paramref name="server"/>, if anyone listens.</summary>
    internal static Activity? StartClient(uint code, string server)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        Activity? activity = Source.StartActivity(SpanName(code), ActivityKind.Client);
        if (activity is { IsAllDataRequested: true })
        {
            AddTags(activity, code, server);
        }
        return activity;
    }

    /// <summary>Starts a server span for a call of <paramref name="code"/> under the caller's <paramref name="parent"/>, if anyone listens.</summary>
    internal static Activity? StartServer(uint code, string server, in ActivityContext parent)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        Activity? activity = Source.StartActivity(SpanName(code), ActivityKind.Server, parent);
        if (activity is { IsAllDataRequested: true })
        {
            AddTags(activity, code, server);
        }
        return activity;
    }

    /// <summary>Marks <paramref name="activity"/> failed by <paramref name="error"/>.</summary>
    internal static void SetError(Activity activity, Exception error)
    {
        activity.SetStatus(ActivityStatusCode.Error, error.Message);
        activity.SetTag("error.type", error.GetType().FullName);
        if (error is PageRangeStatusException status)
        {
            activity.SetTag("rpc.pagerange.status", status.Status.ToString());
        }
        else if (error is RemoteCallException remote)
        {
            activity.SetTag("rpc.pagerange.status", remote.Status.ToString());
        }
    }

    /// <summary>Marks <paramref name="activity"/> failed with a call status (the server's error reply).</summary>
    internal static void SetError(Activity activity, CallStatus status, string message)
    {
        activity.SetStatus(ActivityStatusCode.Error, message);
        activity.SetTag("error.type", status.ToString());
        activity.SetTag("rpc.pagerange.status", status.ToString());
    }

    private static string SpanName(uint code) => string.Create(CultureInfo.InvariantCulture, $"pagerange/{code}");

    private static void AddTags(Activity activity, uint code, string server)
    {
        activity.SetTag("rpc.system", "pagerange");
        activity.SetTag("rpc.method", code.ToString(CultureInfo.InvariantCulture));
        activity.SetTag("server.address", server);
    }
}
