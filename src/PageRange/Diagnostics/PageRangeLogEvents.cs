namespace PageRange.Diagnostics;

/// <summary>
/// The event ids and logger categories of PageRange's log events, for filters and alerts. The ids are stable: an event
/// may gain a field, but its id never changes meaning and a retired id is not reused.
/// </summary>
/// <remarks>
/// <para>
/// Logging is off unless <see cref="PageRangeOptions.LoggerFactory"/> (or <see cref="ShrinkerOptions.LoggerFactory"/>
/// for the shrinker and its memory-pressure monitor) is set; then each event is written by a source-generated
/// <c>LoggerMessage</c> method that checks <c>IsEnabled</c> before formatting anything.
/// </para>
/// <para>
/// Ranges: 1-99 connections and handshakes (<see cref="TransportCategory"/>); 100-199 the buffer allocator
/// (<see cref="AllocationCategory"/>); 200-299 the shrinker and memory pressure (<see cref="MemoryCategory"/>);
/// 300-399 the server (<see cref="ServerCategory"/>).
/// </para>
/// </remarks>
public static class PageRangeLogEvents
{
    /// <summary>The category of connection and handshake events: <c>PageRange.Transport</c>.</summary>
    public const string TransportCategory = "PageRange.Transport";

    /// <summary>The category of the buffer allocator's events: <c>PageRange.Allocation</c>.</summary>
    public const string AllocationCategory = "PageRange.Allocation";

    /// <summary>The category of the shrinker's and the memory-pressure monitor's events: <c>PageRange.Memory</c>.</summary>
    public const string MemoryCategory = "PageRange.Memory";

    /// <summary>The category of the server's events: <c>PageRange.Server</c>.</summary>
    public const string ServerCategory = "PageRange.Server";

    /// <summary>1, Warning: a handshake was refused (uid not allowed, protocol version or region refused).</summary>
    public const int HandshakeRefused = 1;

    /// <summary>2, Warning: a handshake failed (timeout, the peer hung up, a malformed frame).</summary>
    public const int HandshakeFailed = 2;

    /// <summary>3, Information: the peer process died or closed the connection; pending calls failed.</summary>
    public const int PeerDied = 3;

    /// <summary>4, Error: the peer wrote something invalid into shared memory or the control socket; the connection is closed.</summary>
    public const int ProtocolViolation = 4;

    /// <summary>5, Debug: a send found the peer's region full and began to wait for frees.</summary>
    public const int RegionFullBegan = 5;

    /// <summary>6, Debug: the peer's region has room again; how long the episode lasted.</summary>
    public const int RegionFullEnded = 6;

    /// <summary>100, Warning: the peer freed a buffer that is not live (unknown, undelivered or already freed); ignored, as binder does.</summary>
    public const int IgnoredFree = 100;

    /// <summary>101, Warning: binder's oneway-spam detection fired for a sender.</summary>
    public const int OnewaySpamSuspected = 101;

    /// <summary>102, Warning: a reservation failed for lack of space, with the allocator's summary.</summary>
    public const int AllocationFailed = 102;

    /// <summary>103, Warning: an abort of a buffer already delivered was refused.</summary>
    public const int AbortRefused = 103;

    /// <summary>200, Debug: a shrinker pass: pages scanned, freed and skipped.</summary>
    public const int ShrinkerPass = 200;

    /// <summary>201, Information: the memory-pressure signals changed (pressure began, changed or ended).</summary>
    public const int MemoryPressureChanged = 201;

    /// <summary>300, Debug: a client connected to a server.</summary>
    public const int ClientConnected = 300;

    /// <summary>301, Debug: a client's connection to a server ended.</summary>
    public const int ClientDisconnected = 301;

    /// <summary>302, Error: a server's handler threw.</summary>
    public const int HandlerFailed = 302;

    /// <summary>303, Warning: a client stopped reading its replies (a reply found no room in time); its connection is closed.</summary>
    public const int ClientStoppedReading = 303;

    /// <summary>304, Warning: a server's worker thread could not be started (the process's thread or pid limit); the
    /// work waits for the workers there are. At most 10 lines per 5 s; the next line counts those left out.</summary>
    public const int WorkerThreadStartFailed = 304;

    /// <summary>305, Information: a client reached <c>MaxConcurrentCallsPerClient</c>; its next calls wait in its own
    /// queue until its earlier calls end. At most 10 lines per 5 s; the next line counts those left out.</summary>
    public const int ClientCallsQueued = 305;

    /// <summary>306, Warning: a client's call was refused (<c>ResourceExhausted</c>): its queue held
    /// <c>MaxQueuedCallsPerClient</c> calls already. At most 10 lines per 5 s; the next line counts those left out.</summary>
    public const int ClientCallRefused = 306;
}
