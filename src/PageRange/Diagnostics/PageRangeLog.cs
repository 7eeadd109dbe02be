using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace PageRange.Diagnostics;

/// <summary>
/// Every log event PageRange writes, as source-generated <c>LoggerMessage</c> methods with the stable ids of
/// <see cref="PageRangeLogEvents"/>.
/// </summary>
/// <remarks>
/// Each generated method checks <see cref="ILogger.IsEnabled"/> first, so with <see cref="NullLogger.Instance"/> (what
/// <see cref="CreateLogger"/> returns without a factory) an event costs one interface call: no formatting, no boxing, no
/// allocation. Callers pass values they already hold; none computes a string only to log it.
/// </remarks>
internal static partial class PageRangeLog
{
    /// <summary>A logger of <paramref name="category"/> from <paramref name="factory"/>, or the no-op logger without one.</summary>
    internal static ILogger CreateLogger(ILoggerFactory? factory, string category) =>
        factory?.CreateLogger(category) ?? NullLogger.Instance;

    /// <remarks>Rate-limited on a listener and a server (<see cref="LogRateLimit"/>): <paramref name="notLoggedBefore"/> counts
    /// the refused and failed handshakes of the same listener or server whose lines were left out since the last one.</remarks>
    [LoggerMessage(EventId = PageRangeLogEvents.HandshakeRefused, Level = LogLevel.Warning,
        Message = "Handshake on '{Name}' with pid {PeerPid} (uid {PeerUid}) refused: {Reason} ({NotLoggedBefore} more failed or refused handshakes were not logged before this one)")]
    internal static partial void HandshakeRefused(ILogger logger, string name, int peerPid, uint peerUid, string reason, long notLoggedBefore);

    /// <remarks>Rate-limited as <see cref="HandshakeRefused"/> is, with the same count.</remarks>
    [LoggerMessage(EventId = PageRangeLogEvents.HandshakeFailed, Level = LogLevel.Warning,
        Message = "Handshake on '{Name}' with pid {PeerPid} failed: {Reason} ({NotLoggedBefore} more failed or refused handshakes were not logged before this one)")]
    internal static partial void HandshakeFailed(ILogger logger, Exception? exception, string name, int peerPid, string reason, long notLoggedBefore);

    [LoggerMessage(EventId = PageRangeLogEvents.PeerDied, Level = LogLevel.Information,
        Message = "Peer pid {PeerPid} on '{Name}' is gone; {PendingCalls} pending calls failed")]
    internal static partial void PeerDied(ILogger logger, string name, int peerPid, int pendingCalls);

    [LoggerMessage(EventId = PageRangeLogEvents.ProtocolViolation, Level = LogLevel.Error,
        Message = "Peer pid {PeerPid} on '{Name}' broke the protocol in {Where}: {What}; the connection is closed")]
    internal static partial void ProtocolViolation(ILogger logger, string name, int peerPid, string where, string what);

    [LoggerMessage(EventId = PageRangeLogEvents.RegionFullBegan, Level = LogLevel.Debug,
        Message = "The region of pid {PeerPid} on '{Name}' is full: {Bytes} bytes wait for the peer to free space")]
    internal static partial void RegionFullBegan(ILogger logger, string name, int peerPid, long bytes);

    [LoggerMessage(EventId = PageRangeLogEvents.RegionFullEnded, Level = LogLevel.Debug,
        Message = "The region of pid {PeerPid} on '{Name}' has room again after {WaitedMilliseconds} ms ({Sends} sends waited)")]
    internal static partial void RegionFullEnded(ILogger logger, string name, int peerPid, double waitedMilliseconds, long sends);

    [LoggerMessage(EventId = PageRangeLogEvents.IgnoredFree, Level = LogLevel.Warning,
        Message = "free of offset {Offset} ignored: {Reason}")]
    internal static partial void IgnoredFree(ILogger logger, long offset, string reason);

    /// <remarks>Binder's own words (<c>binder_alloc_new_buf_locked</c>), so a reader of both recognises the event.</remarks>
    [LoggerMessage(EventId = PageRangeLogEvents.OnewaySpamSuspected, Level = LogLevel.Warning,
        Message = "pid {SenderPid} spamming oneway? {BufferCount} buffers allocated for a total size of {TotalBytes}")]
    internal static partial void OnewaySpamSuspected(ILogger logger, int senderPid, int bufferCount, long totalBytes);

    /// <remarks><paramref name="space"/> is <c>address</c> or <c>oneway</c>: binder's "no address space" and its oneway twin.</remarks>
    [LoggerMessage(EventId = PageRangeLogEvents.AllocationFailed, Level = LogLevel.Warning,
        Message = "no {Space} space for {Bytes} bytes; {Summary}")]
    internal static partial void AllocationFailed(ILogger logger, string space, long bytes, string summary);

    [LoggerMessage(EventId = PageRangeLogEvents.AbortRefused, Level = LogLevel.Warning,
        Message = "abort of the delivered buffer at offset {Offset} refused")]
    internal static partial void AbortRefused(ILogger logger, long offset);

    [LoggerMessage(EventId = PageRangeLogEvents.ShrinkerPass, Level = LogLevel.Debug,
        Message = "Shrinker pass: scanned {Scanned} pages, freed {Freed}, skipped {Skipped}")]
    internal static partial void ShrinkerPass(ILogger logger, long scanned, long freed, long skipped);

    /// <remarks>
    /// The signals come as text so this layer needs no type of <c>PageRange.Memory</c>; the monitor logs only when they
    /// change, at most once a poll, so the two strings cost nothing that matters.
    /// </remarks>
    [LoggerMessage(EventId = PageRangeLogEvents.MemoryPressureChanged, Level = LogLevel.Information,
        Message = "Memory pressure signals {Signals} (were {Previous}): PSI some avg10 {PsiSomeAvg10}%, MemAvailable {MemAvailableBytes} of {MemTotalBytes} bytes, GC memory load {GcMemoryLoadPercent}%")]
    internal static partial void MemoryPressureChanged(
        ILogger logger, string signals, string previous,
        double? psiSomeAvg10, long? memAvailableBytes, long? memTotalBytes, double? gcMemoryLoadPercent);

    [LoggerMessage(EventId = PageRangeLogEvents.ClientConnected, Level = LogLevel.Debug,
        Message = "Client pid {PeerPid} (uid {PeerUid}) connected to '{Name}'")]
    internal static partial void ClientConnected(ILogger logger, string name, int peerPid, uint peerUid);

    [LoggerMessage(EventId = PageRangeLogEvents.ClientDisconnected, Level = LogLevel.Debug,
        Message = "Client pid {PeerPid} disconnected from '{Name}': {Reason}")]
    internal static partial void ClientDisconnected(ILogger logger, string name, int peerPid, string reason);

    [LoggerMessage(EventId = PageRangeLogEvents.ClientStoppedReading, Level = LogLevel.Warning,
        Message = "Client pid {PeerPid} on '{Name}' stopped reading its replies (no room for a reply within {TimeoutMilliseconds} ms); its connection is closed")]
    internal static partial void ClientStoppedReading(ILogger logger, string name, int peerPid, double timeoutMilliseconds);

    [LoggerMessage(EventId = PageRangeLogEvents.WorkerThreadStartFailed, Level = LogLevel.Warning,
        Message = "A worker thread of '{Name}' could not be started ({ThreadCount} running; {NotLoggedBefore} more failures were not logged before this one); the calls queued wait for the workers there are")]
    internal static partial void WorkerThreadStartFailed(ILogger logger, Exception exception, string name, int threadCount, long notLoggedBefore);

    [LoggerMessage(EventId = PageRangeLogEvents.ClientCallsQueued, Level = LogLevel.Information,
        Message = "Client pid {PeerPid} on '{Name}' has {Limit} calls running (MaxConcurrentCallsPerClient): its next calls wait for them ({Queued} waiting; {NotLoggedBefore} more such lines were not logged before this one)")]
    internal static partial void ClientCallsQueued(ILogger logger, string name, int peerPid, int limit, int queued, long notLoggedBefore);

    [LoggerMessage(EventId = PageRangeLogEvents.ClientCallRefused, Level = LogLevel.Warning,
        Message = "A call (code {Code}) of client pid {PeerPid} on '{Name}' was refused: {Limit} calls running and {QueueLimit} waiting already (MaxConcurrentCallsPerClient, MaxQueuedCallsPerClient; {NotLoggedBefore} more refusals were not logged before this one)")]
    internal static partial void ClientCallRefused(ILogger logger, string name, int peerPid, uint code, int limit, int queueLimit, long notLoggedBefore);

    [LoggerMessage(EventId = PageRangeLogEvents.HandlerFailed, Level = LogLevel.Error,
        Message = "The handler of code {Code} failed on a call from pid {PeerPid} on '{Name}'")]
    internal static partial void HandlerFailed(ILogger logger, Exception exception, string name, int peerPid, uint code);
}
