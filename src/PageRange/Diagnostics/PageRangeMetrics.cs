using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace PageRange.Diagnostics;

/// <summary>
/// The <c>PageRange</c> meter (<see cref="System.Diagnostics.Metrics"/>): what binder shows in debugfs, for
/// <c>dotnet-counters monitor --counters PageRange -p &lt;pid&gt;</c> or an OpenTelemetry exporter
/// (<c>AddMeter(PageRangeMetrics.MeterName)</c>), with no code in the application.
/// </summary>
/// <remarks>
/// <para>
/// Names, units and tags follow OpenTelemetry's conventions: <c>pagerange.*</c> names of dot-separated lower-case
/// words, UCUM units (<c>By</c>, <c>s</c>, <c>{transaction}</c>), tags in the <c>pagerange.</c> namespace, and the
/// RPC conventions' <c>rpc.*</c> histograms (tags <c>rpc.system</c> = <c>pagerange</c> and <c>rpc.pagerange.status</c>
/// = the <see cref="CallStatus"/> name) for calls. The README's metrics table lists every instrument with its kind,
/// unit, tags and meaning (a test keeps it complete).
/// </para>
/// <para>
/// Counters are recorded as things happen; observable counters and gauges (summed over the live connections) are read
/// when a listener collects; histograms are recorded only while someone listens.
/// </para>
/// <para>
/// Recording allocates nothing and, while nobody listens, costs one field read per instrument: every hot-path
/// method checks <see cref="Instrument.Enabled"/> first and passes its one tag by value, never in an array.
/// </para>
/// </remarks>
public static class PageRangeMetrics
{
    /// <summary>The meter's name: <c>PageRange</c>.</summary>
    public const string MeterName = "PageRange";

    // Field initializers run in textual order: the meter first, then the instruments it creates.
    private static readonly Meter s_meter = new(MeterName, typeof(PageRangeMetrics).Assembly.GetName().Version?.ToString());

    // OpenTelemetry's advice for RPC durations (seconds), finer at the low end where shared-memory calls live.
    private static readonly double[] s_durationBuckets =
        [0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    // Indexed by TransactionKind; a KeyValuePair is passed by value, so recording with one of these allocates nothing.
    private static readonly KeyValuePair<string, object?>[] s_kindTags =
    [
        new("pagerange.transaction.kind", "oneway"),
        new("pagerange.transaction.kind", "call"),
        new("pagerange.transaction.kind", "reply"),
        new("pagerange.transaction.kind", "error_reply"),
    ];

    private static readonly KeyValuePair<string, object?> s_used = new("pagerange.page.state", "used");
    private static readonly KeyValuePair<string, object?> s_available = new("pagerange.page.state", "available");
    private static readonly KeyValuePair<string, object?> s_free = new("pagerange.page.state", "free");
    private static readonly KeyValuePair<string, object?> s_inboundRegion = new("pagerange.region.direction", "inbound");
    private static readonly KeyValuePair<string, object?> s_outboundRegion = new("pagerange.region.direction", "outbound");
    private static readonly KeyValuePair<string, object?> s_outbound = new("pagerange.transaction.direction", "outbound");
    private static readonly KeyValuePair<string, object?> s_inbound = new("pagerange.transaction.direction", "inbound");
    private static readonly KeyValuePair<string, object?> s_clientRole = new("pagerange.connection.role", "client");
    private static readonly KeyValuePair<string, object?> s_serverRole = new("pagerange.connection.role", "server");

    internal static readonly Counter<long> TransactionsSent = s_meter.CreateCounter<long>(
        "pagerange.transaction.sent", "{transaction}", "Transactions published into the peers' regions.");

    internal static readonly Counter<long> TransactionsReceived = s_meter.CreateCounter<long>(
        "pagerange.transaction.received", "{transaction}", "Transactions taken off this process's rings.");

    internal static readonly Counter<long> BytesSent = s_meter.CreateCounter<long>(
        "pagerange.payload.sent", "By", "Payload bytes copied into the peers' regions.");

    internal static readonly Counter<long> BytesReceived = s_meter.CreateCounter<long>(
        "pagerange.payload.received", "By", "Payload bytes received in place.");

    internal static readonly Counter<long> Frees = s_meter.CreateCounter<long>(
        "pagerange.buffer.freed", "{buffer}", "Buffers handed back to the peers (binder's BC_FREE_BUFFER).");

    internal static readonly Counter<long> ProtocolViolations = s_meter.CreateCounter<long>(
        "pagerange.protocol.violations", "{connection}", "Connections closed because the peer broke the protocol.");

    internal static readonly Counter<long> RegionFullWaits = s_meter.CreateCounter<long>(
        "pagerange.region.full.waits", "{transaction}", "Sends that found the peer's region full and waited for frees.");

    internal static readonly Counter<long> RegionFullFailures = s_meter.CreateCounter<long>(
        "pagerange.region.full.failures", "{transaction}", "Sends that gave up: the peer's region stayed full.");

    private static readonly ObservableCounter<long> s_ignoredFrees = s_meter.CreateObservableCounter(
        "pagerange.buffer.free.ignored", static () => MetricsRegistry.Collect().IgnoredFrees, "{free}",
        "Frees from peers that matched no live buffer, ignored.");

    private static readonly ObservableCounter<long> s_onewaySpam = s_meter.CreateObservableCounter(
        "pagerange.oneway.spam.suspects", static () => MetricsRegistry.Collect().OnewaySpamSuspects, "{report}",
        "Oneway-spam suspects (binder's BR_ONEWAY_SPAM_SUSPECT).");

    private static readonly ObservableCounter<long> s_pagesScanned = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages.scanned", static () => MetricsRegistry.Collect().ShrinkerPagesScanned, "{page}",
        "Pages the shared shrinker looked at.");

    private static readonly ObservableCounter<long> s_pagesFreed = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages.freed", static () => MetricsRegistry.Collect().ShrinkerPagesFreed, "{page}",
        "Pages the shared shrinker gave back to the kernel.");

    private static readonly ObservableCounter<long> s_pagesSkipped = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages.skipped", static () => MetricsRegistry.Collect().ShrinkerPagesSkipped, "{page}",
        "Pages the shared shrinker skipped because their range was busy.");

    private static readonly ObservableGauge<long> s_pages = s_meter.CreateObservableGauge(
        "pagerange.region.pages", ObservePages, "{page}", "Pages of the peers' regions by state: used, available (on the LRU), free.");

    private static readonly ObservableGauge<long> s_residentBytes = s_meter.CreateObservableGauge(
        "pagerange.region.resident", ObserveResidentBytes, "By", "Backed bytes of our receive regions (inbound) and of the peers' (outbound).");

    private static readonly ObservableGauge<long> s_inFlight = s_meter.CreateObservableGauge(
        "pagerange.transaction.in_flight", ObserveInFlight, "{transaction}",
        "Sent and not yet freed by the peer (outbound); received and not yet disposed (inbound).");

    private static readonly ObservableGauge<long> s_freeOnewaySpace = s_meter.CreateObservableGauge(
        "pagerange.oneway.space.available", static () => MetricsRegistry.Collect().FreeOnewaySpace, "By",
        "The oneway quota left in the peers' regions.");

    private static readonly ObservableGauge<long> s_connections = s_meter.CreateObservableGauge(
        "pagerange.connection.count", ObserveConnections, "{connection}",
        "Live connections by role: client (this process connected) or server (a listener of this process accepted).");

    internal static readonly UpDownCounter<long> ServerClients = s_meter.CreateUpDownCounter<long>(
        "pagerange.server.client.count", "{client}", "Clients connected to this process's servers.");

    internal static readonly Counter<long> ServerClientsDisconnected = s_meter.CreateCounter<long>(
        "pagerange.server.client.disconnected", "{client}", "Clients whose connection ended, by reason.");

    internal static readonly Counter<long> ServerClientsRefused = s_meter.CreateCounter<long>(
        "pagerange.server.client.refused", "{client}", "Clients a server's limits, or its listener's handshake shares, refused.");

    internal static readonly Counter<long> ServerHandshakesFailed = s_meter.CreateCounter<long>(
        "pagerange.server.handshake.failed", "{handshake}", "Processes whose handshake with a server failed.");

    internal static readonly Counter<long> ServerCallsFailed = s_meter.CreateCounter<long>(
        "pagerange.server.call.failed", "{call}", "Calls a server answered with an error status, by status.");

    internal static readonly Counter<long> ServerCallsQueued = s_meter.CreateCounter<long>(
        "pagerange.server.call.queued", "{call}", "Calls that waited in their client's queue (MaxConcurrentCallsPerClient reached).");

    internal static readonly UpDownCounter<long> ServerThreads = s_meter.CreateUpDownCounter<long>(
        "pagerange.server.thread.count", "{thread}", "Worker threads of this process's servers.");

    /// <summary>Counts a server's client in (+1) or out (-1).</summary>
    internal static void RecordServerClients(int delta) => ServerClients.Add(delta);

    /// <summary>Counts a server's client whose connection ended.</summary>
    /// <param name="reason">Why, as the tag <c>reason</c>.</param>
    internal static void RecordServerClientDisconnected(string reason) =>
        ServerClientsDisconnected.Add(1, new KeyValuePair<string, object?>("pagerange.disconnect.reason", reason));

    /// <summary>Counts a client a server's limit refused.</summary>
    internal static void RecordServerClientRefused() => ServerClientsRefused.Add(1);

    /// <summary>Counts a failed handshake with a server.</summary>
    internal static void RecordServerHandshakeFailed() => ServerHandshakesFailed.Add(1);

    /// <summary>Counts a call that waits in its client's queue (the client reached MaxConcurrentCallsPerClient).</summary>
    internal static void RecordServerCallQueued() => ServerCallsQueued.Add(1);

    /// <summary>Counts a call a server failed, tagged with its status.</summary>
    internal static void RecordServerCallFailed(CallStatus status)
    {
        if (ServerCallsFailed.Enabled)
        {
            ServerCallsFailed.Add(1, StatusTag(status));
        }
    }

    private static readonly KeyValuePair<string, object?> s_rpcSystem = new("rpc.system", "pagerange");

    // Indexed by CallStatus (0 .. Unauthenticated): pre-built, so recording a call allocates nothing.
    private static readonly KeyValuePair<string, object?>[] s_statusTags = BuildStatusTags();

    internal static readonly Histogram<double> ClientCallDuration = s_meter.CreateHistogram<double>(
        "rpc.client.call.duration", "s", "Duration of calls this process made, from send to reply, by status.",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = s_durationBuckets });

    internal static readonly Histogram<double> ServerCallDuration = s_meter.CreateHistogram<double>(
        "rpc.server.call.duration", "s", "Duration of calls this process's servers handled, from dispatch to the handler's end, by status.",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = s_durationBuckets });

    internal static readonly Histogram<long> ClientRequestSize = s_meter.CreateHistogram<long>(
        "rpc.client.request.size", "By", "Payload bytes of the requests of calls this process made.");

    internal static readonly Histogram<long> ClientResponseSize = s_meter.CreateHistogram<long>(
        "rpc.client.response.size", "By", "Payload bytes of the replies to calls this process made.");

    internal static readonly Histogram<long> ServerRequestSize = s_meter.CreateHistogram<long>(
        "rpc.server.request.size", "By", "Payload bytes of the calls and oneway messages this process's servers handled.");

    /// <summary>Whether anyone listens to the client call histograms (then calls are timed).</summary>
    internal static bool ClientCallObserved => ClientCallDuration.Enabled || ClientRequestSize.Enabled || ClientResponseSize.Enabled;

    /// <summary>Records a call this process made: its duration since <paramref name="started"/> and its sizes.</summary>
    /// <param name="status">How it ended.</param>
    /// <param name="started">A <see cref="System.Diagnostics.Stopwatch"/> timestamp taken before the send.</param>
    /// <param name="requestBytes">The request's payload bytes.</param>
    /// <param name="responseBytes">The reply's payload bytes; negative when there was none.</param>
    internal static void RecordClientCall(CallStatus status, long started, int requestBytes, int responseBytes)
    {
        KeyValuePair<string, object?> statusTag = StatusTag(status);
        if (ClientCallDuration.Enabled)
        {
            ClientCallDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, s_rpcSystem, statusTag);
        }
        if (ClientRequestSize.Enabled)
        {
            ClientRequestSize.Record(requestBytes, s_rpcSystem, statusTag);
        }
        if (responseBytes >= 0 && ClientResponseSize.Enabled)
        {
            ClientResponseSize.Record(responseBytes, s_rpcSystem, statusTag);
        }
    }

    /// <summary>Records a call a server handled: its duration since <paramref name="started"/> and its request size.</summary>
    internal static void RecordServerCall(CallStatus status, long started, int requestBytes)
    {
        KeyValuePair<string, object?> statusTag = StatusTag(status);
        if (ServerCallDuration.Enabled)
        {
            ServerCallDuration.Record(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, s_rpcSystem, statusTag);
        }
        if (ServerRequestSize.Enabled)
        {
            ServerRequestSize.Record(requestBytes, s_rpcSystem, statusTag);
        }
    }

    /// <summary>Whether anyone listens to the server call histograms (then handled calls are timed).</summary>
    internal static bool ServerCallObserved => ServerCallDuration.Enabled || ServerRequestSize.Enabled;

    private static KeyValuePair<string, object?> StatusTag(CallStatus status) =>
        (uint)status < (uint)s_statusTags.Length ? s_statusTags[(int)status] : s_statusTags[(int)CallStatus.Unknown];

    private static KeyValuePair<string, object?>[] BuildStatusTags()
    {
        var tags = new KeyValuePair<string, object?>[(int)CallStatus.Unauthenticated + 1];
        for (int i = 0; i < tags.Length; i++)
        {
            tags[i] = new KeyValuePair<string, object?>("rpc.pagerange.status", ((CallStatus)i).ToString());
        }
        return tags;
    }

    /// <summary>Counts a server's worker thread started (+1) or ended (-1).</summary>
    internal static void RecordServerThreads(int delta) => ServerThreads.Add(delta);

    /// <summary>Counts a published transaction and its bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordSent(TransactionKind kind, int bytes)
    {
        // Enabled is one field read: nobody listening costs two branches.
        if (TransactionsSent.Enabled)
        {
            TransactionsSent.Add(1, s_kindTags[(int)kind]);
        }
        if (BytesSent.Enabled)
        {
            BytesSent.Add(bytes, s_kindTags[(int)kind]);
        }
    }

    /// <summary>Counts a received transaction and its bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordReceived(TransactionKind kind, int bytes)
    {
        if (TransactionsReceived.Enabled)
        {
            TransactionsReceived.Add(1, s_kindTags[(int)kind]);
        }
        if (BytesReceived.Enabled)
        {
            BytesReceived.Add(bytes, s_kindTags[(int)kind]);
        }
    }

    /// <summary>Counts a buffer handed back to the peer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void RecordFree()
    {
        if (Frees.Enabled)
        {
            Frees.Add(1);
        }
    }

    /// <summary>Counts a send that found the peer's region full and waits.</summary>
    internal static void RecordRegionFullWait() => RegionFullWaits.Add(1);

    /// <summary>Counts a send that gave up because the peer's region stayed full.</summary>
    internal static void RecordRegionFullFailure() => RegionFullFailures.Add(1);

    /// <summary>Counts a connection's end if the peer broke the protocol.</summary>
    /// <param name="cause">Why the connection ended; only a <see cref="ProtocolViolationException"/> counts.</param>
    internal static void RecordConnectionClosed(Exception? cause)
    {
        if (cause is ProtocolViolationException)
        {
            ProtocolViolations.Add(1);
        }
    }

    private static IEnumerable<Measurement<long>> ObservePages()
    {
        MetricsSample sample = MetricsRegistry.Collect();
        return
        [
            new Measurement<long>(sample.PagesUsed, s_used),
            new Measurement<long>(sample.PagesAvailable, s_available),
            new Measurement<long>(sample.PagesFree, s_free),
        ];
    }

    private static IEnumerable<Measurement<long>> ObserveResidentBytes()
    {
        MetricsSample sample = MetricsRegistry.Collect();
        return
        [
            new Measurement<long>(sample.InboundResidentBytes, s_inboundRegion),
            new Measurement<long>(sample.OutboundResidentBytes, s_outboundRegion),
        ];
    }

    private static IEnumerable<Measurement<long>> ObserveConnections()
    {
        MetricsSample sample = MetricsRegistry.Collect();
        return
        [
            new Measurement<long>(sample.Connections - sample.AcceptedConnections, s_clientRole),
            new Measurement<long>(sample.AcceptedConnections, s_serverRole),
        ];
    }

    private static IEnumerable<Measurement<long>> ObserveInFlight()
    {
        MetricsSample sample = MetricsRegistry.Collect();
        return
        [
            new Measurement<long>(sample.OutboundInFlight, s_outbound),
            new Measurement<long>(sample.InboundInFlight, s_inbound),
        ];
    }
}
