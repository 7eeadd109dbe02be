using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace PageRange.Diagnostics;

/// <summary>
/// The <c>PageRange</c> meter (<see cref="System.Diagnostics.Metrics"/>): what binder shows in debugfs, for
/// <c>dotnet-counters monitor --counters PageRange -p &lt;pid&gt;</c> or an OpenTelemetry exporter
/// (<c>AddMeter(PageRangeMetrics.MeterName)</c>), with no code in the application.
/// </summary>
/// <remarks>
/// <para>Counters, recorded as things happen (a tag <c>kind</c> = <c>oneway</c>, <c>call</c>, <c>reply</c> or
/// <c>error_reply</c> where shown):</para>
/// <list type="bullet">
/// <item><c>pagerange.transactions.sent</c> {kind}: transactions this process published into its peers' regions.</item>
/// <item><c>pagerange.transactions.received</c> {kind}: transactions this process took off its own rings.</item>
/// <item><c>pagerange.bytes.sent</c>, <c>pagerange.bytes.received</c> {kind}: their payload bytes.</item>
/// <item><c>pagerange.frees</c>: buffers this process handed back to its peers (binder's <c>BC_FREE_BUFFER</c>).</item>
/// <item><c>pagerange.protocol_violations</c>: connections closed because the peer broke the protocol.</item>
/// <item><c>pagerange.region_full.waits</c>: sends that found the peer's region full and had to wait for frees.</item>
/// <item><c>pagerange.region_full.failures</c>: sends that gave up with <see cref="RegionFullException"/>.</item>
/// </list>
/// <para>Observable counters, read when a listener collects:</para>
/// <list type="bullet">
/// <item><c>pagerange.frees.ignored</c>: frees from peers that matched no live buffer (binder logs and ignores them).</item>
/// <item><c>pagerange.oneway_spam.suspects</c>: oneway-spam suspects (binder's <c>BR_ONEWAY_SPAM_SUSPECT</c>).</item>
/// <item><c>pagerange.shrinker.pages_scanned</c>, <c>.pages_freed</c>, <c>.pages_skipped</c>: the shared shrinker's work.</item>
/// </list>
/// <para>Observable gauges, summed over the live connections:</para>
/// <list type="bullet">
/// <item><c>pagerange.pages</c> {state = used, available, free}: pages of the peers' regions this process writes into.</item>
/// <item><c>pagerange.resident_bytes</c> {region = inbound, outbound}: backed bytes of our regions and of the peers'.</item>
/// <item><c>pagerange.transactions.in_flight</c> {direction = outbound, inbound}: sent and not yet freed by the peer;
/// received and not yet disposed here.</item>
/// <item><c>pagerange.oneway.free_space</c>: the oneway quota left in the peers' regions.</item>
/// <item><c>pagerange.connections</c>: live connections.</item>
/// </list>
/// <para>Servers (<c>PageRange.Server.PageRangeServer</c>): <c>pagerange.server.clients</c> and
/// <c>pagerange.server.threads</c> (up-down counters: connected clients, worker threads);
/// <c>pagerange.server.clients.disconnected</c> {reason = peer_closed, protocol_violation, server_stopping, failed},
/// <c>pagerange.server.clients.refused</c>, <c>pagerange.server.handshakes.failed</c> and
/// <c>pagerange.server.calls.failed</c> {status}.</para>
/// <para>Histograms after OpenTelemetry's RPC conventions (tags <c>rpc.system</c> = <c>pagerange</c> and
/// <c>rpc.pagerange.status</c> = the <see cref="CallStatus"/> name), recorded only while someone listens:
/// <c>rpc.client.call.duration</c> and <c>rpc.server.call.duration</c> (s), <c>rpc.client.request.size</c>,
/// <c>rpc.client.response.size</c> and <c>rpc.server.request.size</c> (By, payload bytes).</para>
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
        new("kind", "oneway"),
        new("kind", "call"),
        new("kind", "reply"),
        new("kind", "error_reply"),
    ];

    private static readonly KeyValuePair<string, object?> s_used = new("state", "used");
    private static readonly KeyValuePair<string, object?> s_available = new("state", "available");
    private static readonly KeyValuePair<string, object?> s_free = new("state", "free");
    private static readonly KeyValuePair<string, object?> s_inboundRegion = new("region", "inbound");
    private static readonly KeyValuePair<string, object?> s_outboundRegion = new("region", "outbound");
    private static readonly KeyValuePair<string, object?> s_outbound = new("direction", "outbound");
    private static readonly KeyValuePair<string, object?> s_inbound = new("direction", "inbound");

    internal static readonly Counter<long> TransactionsSent = s_meter.CreateCounter<long>(
        "pagerange.transactions.sent", "{transaction}", "Transactions published into the peers' regions.");

    internal static readonly Counter<long> TransactionsReceived = s_meter.CreateCounter<long>(
        "pagerange.transactions.received", "{transaction}", "Transactions taken off this process's rings.");

    internal static readonly Counter<long> BytesSent = s_meter.CreateCounter<long>(
        "pagerange.bytes.sent", "By", "Payload bytes copied into the peers' regions.");

    internal static readonly Counter<long> BytesReceived = s_meter.CreateCounter<long>(
        "pagerange.bytes.received", "By", "Payload bytes received in place.");

    internal static readonly Counter<long> Frees = s_meter.CreateCounter<long>(
        "pagerange.frees", "{buffer}", "Buffers handed back to the peers (binder's BC_FREE_BUFFER).");

    internal static readonly Counter<long> ProtocolViolations = s_meter.CreateCounter<long>(
        "pagerange.protocol_violations", "{connection}", "Connections closed because the peer broke the protocol.");

    internal static readonly Counter<long> RegionFullWaits = s_meter.CreateCounter<long>(
        "pagerange.region_full.waits", "{transaction}", "Sends that found the peer's region full and waited for frees.");

    internal static readonly Counter<long> RegionFullFailures = s_meter.CreateCounter<long>(
        "pagerange.region_full.failures", "{transaction}", "Sends that gave up: the peer's region stayed full.");

    private static readonly ObservableCounter<long> s_ignoredFrees = s_meter.CreateObservableCounter(
        "pagerange.frees.ignored", static () => MetricsRegistry.Collect().IgnoredFrees, "{free}",
        "Frees from peers that matched no live buffer, ignored.");

    private static readonly ObservableCounter<long> s_onewaySpam = s_meter.CreateObservableCounter(
        "pagerange.oneway_spam.suspects", static () => MetricsRegistry.Collect().OnewaySpamSuspects, "{report}",
        "Oneway-spam suspects (binder's BR_ONEWAY_SPAM_SUSPECT).");

    private static readonly ObservableCounter<long> s_pagesScanned = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages_scanned", static () => MetricsRegistry.Collect().ShrinkerPagesScanned, "{page}",
        "Pages the shared shrinker looked at.");

    private static readonly ObservableCounter<long> s_pagesFreed = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages_freed", static () => MetricsRegistry.Collect().ShrinkerPagesFreed, "{page}",
        "Pages the shared shrinker gave back to the kernel.");

    private static readonly ObservableCounter<long> s_pagesSkipped = s_meter.CreateObservableCounter(
        "pagerange.shrinker.pages_skipped", static () => MetricsRegistry.Collect().ShrinkerPagesSkipped, "{page}",
        "Pages the shared shrinker skipped because their range was busy.");

    private static readonly ObservableGauge<long> s_pages = s_meter.CreateObservableGauge(
        "pagerange.pages", ObservePages, "{page}", "Pages of the peers' regions by state: used, available (on the LRU), free.");

    private static readonly ObservableGauge<long> s_residentBytes = s_meter.CreateObservableGauge(
        "pagerange.resident_bytes", ObserveResidentBytes, "By", "Backed bytes of our receive regions (inbound) and of the peers' (outbound).");

    private static readonly ObservableGauge<long> s_inFlight = s_meter.CreateObservableGauge(
        "pagerange.transactions.in_flight", ObserveInFlight, "{transaction}",
        "Sent and not yet freed by the peer (outbound); received and not yet disposed (inbound).");

    private static readonly ObservableGauge<long> s_freeOnewaySpace = s_meter.CreateObservableGauge(
        "pagerange.oneway.free_space", static () => MetricsRegistry.Collect().FreeOnewaySpace, "By",
        "The oneway quota left in the peers' regions.");

    private static readonly ObservableGauge<long> s_connections = s_meter.CreateObservableGauge(
        "pagerange.connections", static () => MetricsRegistry.Collect().Connections, "{connection}", "Live connections.");

    internal static readonly UpDownCounter<long> ServerClients = s_meter.CreateUpDownCounter<long>(
        "pagerange.server.clients", "{client}", "Clients connected to this process's servers.");

    internal static readonly Counter<long> ServerClientsDisconnected = s_meter.CreateCounter<long>(
        "pagerange.server.clients.disconnected", "{client}", "Clients whose connection ended, by reason.");

    internal static readonly Counter<long> ServerClientsRefused = s_meter.CreateCounter<long>(
        "pagerange.server.clients.refused", "{client}", "Clients a server's limits refused after their handshake.");

    internal static readonly Counter<long> ServerHandshakesFailed = s_meter.CreateCounter<long>(
        "pagerange.server.handshakes.failed", "{handshake}", "Processes whose handshake with a server failed.");

    internal static readonly Counter<long> ServerCallsFailed = s_meter.CreateCounter<long>(
        "pagerange.server.calls.failed", "{call}", "Calls a server answered with an error status, by status.");

    internal static readonly UpDownCounter<long> ServerThreads = s_meter.CreateUpDownCounter<long>(
        "pagerange.server.threads", "{thread}", "Worker threads of this process's servers.");

    /// <summary>Counts a server's client in (+1) or out (-1).</summary>
    internal static void RecordServerClients(int delta) => ServerClients.Add(delta);

    /// <summary>Counts a server's client whose connection ended.</summary>
    /// <param name="reason">Why, as the tag <c>reason</c>.</param>
    internal static void RecordServerClientDisconnected(string reason) =>
        ServerClientsDisconnected.Add(1, new KeyValuePair<string, object?>("reason", reason));

    /// <summary>Counts a client a server's limit refused.</summary>
    internal static void RecordServerClientRefused() => ServerClientsRefused.Add(1);

    /// <summary>Counts a failed handshake with a server.</summary>
    internal static void RecordServerHandshakeFailed() => ServerHandshakesFailed.Add(1);

    /// <summary>Counts a call a server failed, tagged with its status.</summary>
    internal static void RecordServerCallFailed(CallStatus status)
    {
        if (ServerCallsFailed.Enabled)
        {
            ServerCallsFailed.Add(1, new KeyValuePair<string, object?>("status", status.ToString()));
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
