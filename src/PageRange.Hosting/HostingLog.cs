using Microsoft.Extensions.Logging;

namespace PageRange.Hosting;

/// <summary>The hosting package's log events, source-generated (nothing is formatted when the level is off).</summary>
internal static partial class HostingLog
{
    [LoggerMessage(EventId = PageRangeHostingLogEvents.ServerStarted, Level = LogLevel.Information,
        Message = "PageRange server '{ServerName}' listening on '{ListenName}' ({MinThreads} to {MaxThreads} worker threads).")]
    public static partial void ServerStarted(ILogger logger, string serverName, string listenName, int minThreads, int maxThreads);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ServerStopping, Level = LogLevel.Information,
        Message = "PageRange server '{ServerName}' stopping: {InFlightCalls} calls in flight, {ClientCount} clients connected.")]
    public static partial void ServerStopping(ILogger logger, string serverName, int inFlightCalls, int clientCount);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ServerStopped, Level = LogLevel.Information,
        Message = "PageRange server '{ServerName}' stopped after {ElapsedMilliseconds} ms (grace period cut short by the host: {Cancelled}).")]
    public static partial void ServerStopped(ILogger logger, string serverName, long elapsedMilliseconds, bool cancelled);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ClientConnected, Level = LogLevel.Information,
        Message = "PageRange client '{ClientName}' connected to server '{ServerName}' (pid {ServerPid}).")]
    public static partial void ClientConnected(ILogger logger, string clientName, string serverName, int serverPid);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ClientConnectionLost, Level = LogLevel.Warning,
        Message = "PageRange client '{ClientName}' lost its connection to server '{ServerName}': {Reason}")]
    public static partial void ClientConnectionLost(ILogger logger, string clientName, string serverName, string reason);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ClientConnectFailed, Level = LogLevel.Warning,
        Message = "PageRange client '{ClientName}' could not connect to server '{ServerName}' ({FailedAttempts} failed in a row); next attempt in {RetryDelayMilliseconds} ms: {Error}")]
    public static partial void ClientConnectFailed(ILogger logger, string clientName, string serverName, int failedAttempts, long retryDelayMilliseconds, string error);

    [LoggerMessage(EventId = PageRangeHostingLogEvents.ClientConnectionLostEarly, Level = LogLevel.Warning,
        Message = "PageRange client '{ClientName}' lost its connection to server '{ServerName}' {ConnectedMilliseconds} ms after connecting, counted as a failed attempt ({FailedAttempts} failed in a row); next attempt in {RetryDelayMilliseconds} ms: {Reason}")]
    public static partial void ClientConnectionLostEarly(ILogger logger, string clientName, string serverName, long connectedMilliseconds, int failedAttempts, long retryDelayMilliseconds, string reason);
}
