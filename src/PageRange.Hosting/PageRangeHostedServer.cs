using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using PageRange.Server;

namespace PageRange.Hosting;

/// <summary>
/// Runs one <see cref="PageRangeServer"/> with the host: started when the host starts, stopped when it stops, with
/// the calls in flight given until the host's shutdown timeout to finish (then cancelled, as
/// <see cref="PageRangeServer.StopAsync"/> does).
/// </summary>
/// <remarks>
/// Added by <see cref="PageRangeServiceCollectionExtensions.AddPageRangeServer(Microsoft.Extensions.DependencyInjection.IServiceCollection, string, Action{PageRangeServerBuilder})"/>;
/// resolve it by the server's name (a keyed service) to reach the running <see cref="Server"/>, e.g. for its events.
/// </remarks>
public sealed class PageRangeHostedServer : IHostedService, IAsyncDisposable
{
    private readonly Action<PageRangeServerBuilder> _configure;
    private readonly IOptionsMonitor<PageRangeHostedServerOptions> _options;
    private readonly ILoggerFactory? _loggerFactory;
    private readonly ILogger _logger;
    private PageRangeServer? _server;

    internal PageRangeHostedServer(
        string name, Action<PageRangeServerBuilder> configure, IOptionsMonitor<PageRangeHostedServerOptions> options, ILoggerFactory? loggerFactory)
    {
        Name = name;
        _configure = configure;
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory?.CreateLogger(PageRangeHostingLogEvents.Category) ?? NullLogger.Instance;
    }

    /// <summary>The server's name in the service collection (and the name it listens on, unless <see cref="PageRangeHostedServerOptions.ListenName"/> says otherwise).</summary>
    public string Name { get; }

    /// <summary>The running server; null before the host started it and after it stopped.</summary>
    public PageRangeServer? Server => Volatile.Read(ref _server);

    /// <summary>Starts the server: listens and accepts clients.</summary>
    /// <param name="cancellationToken">The host's start token; starting does not wait, so it is not consulted.</param>
    /// <returns>A completed task.</returns>
    /// <exception cref="InvalidOperationException">Already started.</exception>
    /// <exception cref="PageRangeException">Another listener has the name.</exception>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (Server is not null)
        {
            throw new InvalidOperationException($"PageRange server '{Name}' is already started.");
        }
        // Validated already when the host starts (ValidateOnStart); Get validates again for a host that skipped that.
        PageRangeHostedServerOptions settings = _options.Get(Name);
        PageRangeServerOptions options = settings.CreateServerOptions(_loggerFactory);
        string listenName = settings.ListenName ?? Name;
        var server = PageRangeServer.Start(listenName, options, _configure);
        Volatile.Write(ref _server, server);
        HostingLog.ServerStarted(_logger, Name, listenName, options.MinThreads, options.MaxThreads);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops the server: no new clients or calls; calls in flight finish until <paramref name="cancellationToken"/>
    /// fires (the host's shutdown timeout), then are cancelled; every client is closed.
    /// </summary>
    /// <param name="cancellationToken">The host's stop token: it ends the grace period.</param>
    /// <returns>Completes when every client is closed.</returns>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        PageRangeServer? server = Interlocked.Exchange(ref _server, null);
        if (server is null)
        {
            return;
        }
        HostingLog.ServerStopping(_logger, Name, server.InFlightCalls, server.ClientCount);
        long started = Stopwatch.GetTimestamp();
        await server.StopAsync(cancellationToken).ConfigureAwait(false);
        long elapsed = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        HostingLog.ServerStopped(_logger, Name, elapsed, cancellationToken.IsCancellationRequested);
    }

    /// <summary>Stops the server at once if the host did not stop it.</summary>
    public async ValueTask DisposeAsync()
    {
        PageRangeServer? server = Interlocked.Exchange(ref _server, null);
        if (server is not null)
        {
            await server.DisposeAsync().ConfigureAwait(false);
        }
    }
}
