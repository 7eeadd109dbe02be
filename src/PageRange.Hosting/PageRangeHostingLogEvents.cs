namespace PageRange.Hosting;

/// <summary>The stable ids and category of the hosting package's log events (400 to 499, beside <see cref="Diagnostics.PageRangeLogEvents"/>).</summary>
public static class PageRangeHostingLogEvents
{
    /// <summary>The category of every hosting event: <c>PageRange.Hosting</c>.</summary>
    public const string Category = "PageRange.Hosting";

    /// <summary>400, Information: a hosted server started listening.</summary>
    public const int ServerStarted = 400;

    /// <summary>401, Information: a hosted server is stopping; calls in flight may finish until the host's shutdown timeout.</summary>
    public const int ServerStopping = 401;

    /// <summary>402, Information: a hosted server stopped.</summary>
    public const int ServerStopped = 402;

    /// <summary>410, Information: a client connected to its server.</summary>
    public const int ClientConnected = 410;

    /// <summary>411, Warning: a client lost a connection that had lasted; it connects again on its next use.</summary>
    public const int ClientConnectionLost = 411;

    /// <summary>412, Warning: a client's attempt to connect failed; when it tries again.</summary>
    public const int ClientConnectFailed = 412;

    /// <summary>
    /// 413, Warning: a client lost its connection sooner than <see cref="PageRangeClientOptions.HealthyConnectionTime"/>
    /// after connecting (the server admits it, then drops it): counted as a failed attempt; when it tries again.
    /// </summary>
    public const int ClientConnectionLostEarly = 413;
}
