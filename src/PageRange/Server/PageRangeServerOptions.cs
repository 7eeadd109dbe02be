using PageRange.Memory;

namespace PageRange.Server;

/// <summary>How a <see cref="PageRangeServer"/> accepts clients and runs their calls.</summary>
/// <remarks>The server copies these when it starts; later changes do not reach it.</remarks>
public sealed class PageRangeServerOptions
{
    /// <summary>The most threads a worker pool may have: <see cref="MaxThreads"/> is at most this.</summary>
    public const int MaxPoolThreads = 1024;

    private int _maxClients = 1024;
    private int _maxClientsPerUid = 1024;
    private int _minThreads = 1;
    private int _maxThreads = Math.Max(4, Environment.ProcessorCount * 2);
    private TimeSpan _idleThreadTimeout = TimeSpan.FromSeconds(10);
    private TimeSpan _replyRoomTimeout = TimeSpan.FromMilliseconds(250);
    private int _maxConcurrentCallsPerClient = DefaultMaxConcurrentCallsPerClient;
    private int _maxQueuedCallsPerClient = DefaultMaxQueuedCallsPerClient;

    /// <summary>The default of <see cref="MaxConcurrentCallsPerClient"/>: 100.</summary>
    public const int DefaultMaxConcurrentCallsPerClient = 100;

    /// <summary>The default of <see cref="MaxQueuedCallsPerClient"/>: 1024.</summary>
    public const int DefaultMaxQueuedCallsPerClient = 1024;

    /// <summary>The options of every client connection (region size, rings, timeouts, allowed uids).</summary>
    /// <remarks>Defaults to <see cref="PageRangeOptions"/>'s defaults.</remarks>
    public PageRangeOptions ConnectionOptions { get; set; } = new();

    /// <summary>How many clients may be connected at once; one more is refused (and told only that it was refused).</summary>
    /// <remarks>Defaults to 1024. At least 1.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxClients
    {
        get => _maxClients;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _maxClients = value;
        }
    }

    /// <summary>How many clients running as one uid may be connected at once.</summary>
    /// <remarks>Defaults to 1024. At least 1.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1.</exception>
    public int MaxClientsPerUid
    {
        get => _maxClientsPerUid;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _maxClientsPerUid = value;
        }
    }

    /// <summary>The worker threads kept even when idle.</summary>
    /// <remarks>Defaults to 1. From 1 to <see cref="MaxThreads"/>.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1 or more than <see cref="MaxPoolThreads"/>.</exception>
    public int MinThreads
    {
        get => _minThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxPoolThreads);
            _minThreads = value;
        }
    }

    /// <summary>
    /// The most worker threads running handlers at once, for every client together (binder's
    /// <c>BINDER_SET_MAX_THREADS</c>). A thread is added when work waits and no worker is idle.
    /// </summary>
    /// <remarks>Defaults to twice the processor count, at least 4. From <see cref="MinThreads"/> to <see cref="MaxPoolThreads"/>.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1 or more than <see cref="MaxPoolThreads"/>.</exception>
    public int MaxThreads
    {
        get => _maxThreads;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, MaxPoolThreads);
            _maxThreads = value;
        }
    }

    /// <summary>How long a worker beyond <see cref="MinThreads"/> waits for work before it retires.</summary>
    /// <remarks>Defaults to 10 seconds. From 1 millisecond to one hour.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public TimeSpan IdleThreadTimeout
    {
        get => _idleThreadTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(1));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromHours(1));
            _idleThreadTimeout = value;
        }
    }

    /// <summary>
    /// The longest a reply (or error reply) waits for room in the caller's region. A client whose region stays full that
    /// long has stopped reading its replies: the reply fails, and the server closes that client's connection with
    /// <see cref="ClientDisconnectReason.StoppedReading"/>, so it cannot hold the workers that every client shares
    /// (binder fails a reply that does not fit at once). Replaces <see cref="PageRangeOptions.RegionFullTimeout"/> for
    /// the server's replies; its calls back into a client keep that one.
    /// </summary>
    /// <remarks>
    /// Defaults to 250 milliseconds: a client reading its replies frees room within a scheduling delay. From 1
    /// millisecond to one hour. Raise it for clients that keep many large replies unread on purpose.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is out of bounds.</exception>
    public TimeSpan ReplyRoomTimeout
    {
        get => _replyRoomTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.FromMilliseconds(1));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, TimeSpan.FromHours(1));
            _replyRoomTimeout = value;
        }
    }

    /// <summary>
    /// How many two-way calls of one client may be running at once (handed to the workers, run inline, or waiting for a
    /// worker), counted from their dispatch until their reply is sent or they end otherwise. A client's new calls beyond
    /// this wait in that client's own queue (<see cref="MaxQueuedCallsPerClient"/>), not in the worker pool's queue that
    /// every client shares, so another client's call waits behind at most this many of one client's calls; each queued
    /// call is handed to the workers when one of its client's calls ends (in the order they arrived).
    /// </summary>
    /// <remarks>
    /// <para>
    /// Defaults to 100 (<see cref="DefaultMaxConcurrentCallsPerClient"/>), HTTP/2's recommended least
    /// <c>SETTINGS_MAX_CONCURRENT_STREAMS</c> and Kestrel's and gRPC's per-connection stream limit: a client written for
    /// those expects that many calls at once to run without waiting. From 1 to 65535.
    /// </para>
    /// <para>
    /// The session keeps receiving the client's transactions whatever the count: oneway messages (gRPC stream frames
    /// among them) are dispatched as always, so a call that waits for its client's later messages cannot hold up
    /// those messages. Nested calls the client makes in a chain the server is calling it in (binder's transaction
    /// stack) run beside the limit and are never queued, so a handler calling back into a client at its limit cannot
    /// deadlock; at most this many such calls run at once (beyond, they count as any call). Handlers that block their worker thread keep other clients waiting only while one client holds every
    /// worker: set this below <see cref="MaxThreads"/> for no single client to be able to.
    /// </para>
    /// <para>
    /// A call beyond the limit waits without a signal to its client: a client that keeps this many long-lived calls
    /// open (server-streaming subscriptions, long polls) has its next calls wait until one of them ends, or until their
    /// deadline. Raise the limit for such clients, or give their calls deadlines.
    /// </para>
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is less than 1 or more than 65535.</exception>
    public int MaxConcurrentCallsPerClient
    {
        get => _maxConcurrentCallsPerClient;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 65535);
            _maxConcurrentCallsPerClient = value;
        }
    }

    /// <summary>
    /// How many two-way calls of one client may wait in its queue while it has
    /// <see cref="MaxConcurrentCallsPerClient"/> running. One more is refused at once with
    /// <see cref="CallStatus.ResourceExhausted"/> (the caller gets a <see cref="RemoteCallException"/>); the client's
    /// connection and its other calls go on.
    /// </summary>
    /// <remarks>
    /// Defaults to 1024 (<see cref="DefaultMaxQueuedCallsPerClient"/>), the default of the client's own
    /// <see cref="PageRangeOptions.MaxConcurrentCalls"/>: a client that keeps to its default never has a call refused,
    /// while one that does not (nothing makes a client obey its own options) is bounded by the server. A queued call
    /// costs the server a queue entry; its request stays in the client's region (the client's own budget). From 0 (no
    /// queue: a call beyond <see cref="MaxConcurrentCallsPerClient"/> is refused at once) to 65535. A queued call
    /// whose caller cancelled it, or whose deadline passed, is answered (<see cref="CallStatus.DeadlineExceeded"/>)
    /// instead of run when its turn comes; a server that stops answers its queued calls with
    /// <see cref="CallStatus.Unavailable"/>.
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative or more than 65535.</exception>
    public int MaxQueuedCallsPerClient
    {
        get => _maxQueuedCallsPerClient;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(value, 65535);
            _maxQueuedCallsPerClient = value;
        }
    }

    /// <summary>
    /// Whether a handler's unexpected exception is described to the caller (type and message). Off, the caller gets
    /// <see cref="CallStatus.Internal"/> with a generic message and the details go only to
    /// <see cref="PageRangeServer.CallFailed"/>.
    /// </summary>
    /// <remarks>Defaults to <see langword="false"/>: exception text can carry paths, names and data the caller must not see.</remarks>
    public bool IncludeExceptionDetails { get; set; }

    /// <summary>
    /// Whether the server starts the memory-pressure monitor of <see cref="Shrinker.Shared"/> (if none runs yet) and stops
    /// it when it stops.
    /// </summary>
    /// <remarks>Defaults to <see langword="true"/>.</remarks>
    public bool StartShrinkerMonitor { get; set; } = true;

    /// <summary>
    /// Whether a handler that has been answering quickly runs on the thread that received its call (binder's looper runs
    /// the transaction it read), instead of being handed to a worker: no thread hand-off, so a call takes about the
    /// connection's round trip (about 1 µs) instead of a worker's wake-up (tens of microseconds).
    /// </summary>
    /// <remarks>
    /// Defaults to <see langword="true"/>. A handler runs inline only after its last runs (at least 4 in a row) each
    /// finished, or reached their first real <c>await</c>, within 100 µs, and only while nothing else of that client is
    /// waiting (calls its threads send at once still run side by side on the workers); one that then takes longer goes
    /// back to the workers for a doubling number of runs. While a handler runs inline its client's next calls wait for
    /// it; if it runs for more than 2 ms, another thread takes over receiving that client's calls until it ends (a
    /// handler that waits for its own client's next call cannot deadlock), and a stop closes that client without
    /// waiting for it. A client's end (death, violation) is reported once such a handler returns. Only sessions that
    /// receive on a thread of their own run handlers inline (not those of <see cref="WaitStrategy.BusySpin"/>
    /// connections, which receive on the thread pool). Inline runs are not counted in <see cref="MaxThreads"/>: turn
    /// this off to run every handler on the worker pool.
    /// </remarks>
    public bool RunFastHandlersInline { get; set; } = true;

    /// <summary>The monitor's thresholds when <see cref="StartShrinkerMonitor"/> is on; null for the defaults.</summary>
    public ShrinkerOptions? ShrinkerOptions { get; set; }

    /// <summary>
    /// Whether the server answers <see cref="PageRangeServer.DiagnosticsCode"/> with its state dump (clients, both regions'
    /// pages, buffers, rings, worker threads), for <c>pagerange dump NAME</c>; callers of another uid are refused.
    /// </summary>
    /// <remarks>Defaults to <see langword="false"/>: the code is then not served, like any unmapped code.</remarks>
    public bool EnableDiagnostics { get; set; }

    internal PageRangeServerOptions Clone()
    {
        var copy = (PageRangeServerOptions)MemberwiseClone();
        copy.ConnectionOptions = ConnectionOptions.Clone();
        copy.ShrinkerOptions = ShrinkerOptions?.Clone();
        return copy;
    }

    /// <summary>Checks what one property setter cannot: the thread bounds against each other, and the shrinker's options
    /// (checked before the name is bound: the monitor starts with the server).</summary>
    internal void Validate()
    {
        ArgumentNullException.ThrowIfNull(ConnectionOptions, nameof(ConnectionOptions));
        ShrinkerOptions?.Validate();
        if (MinThreads > MaxThreads)
        {
            throw new ArgumentOutOfRangeException(nameof(MinThreads), MinThreads, $"MinThreads ({MinThreads}) is more than MaxThreads ({MaxThreads}).");
        }
    }
}
