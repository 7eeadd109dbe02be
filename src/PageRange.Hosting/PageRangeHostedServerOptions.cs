using PageRange.Server;

namespace PageRange.Hosting;

/// <summary>
/// The settings of a server run by <see cref="PageRangeServiceCollectionExtensions.AddPageRangeServer(Microsoft.Extensions.DependencyInjection.IServiceCollection, string, Action{PageRangeServerBuilder})"/>:
/// named options (the server's name), bound from configuration or set in code, and checked when the host starts.
/// </summary>
/// <remarks>
/// Each setting left null keeps <see cref="PageRangeServerOptions"/>' default; the names and rules are those of
/// <see cref="PageRangeServerOptions"/>. A bad value fails the host's start with an
/// <see cref="Microsoft.Extensions.Options.OptionsValidationException"/> whose message names the server and the setting,
/// e.g. <c>PageRange server 'calc': MaxThreads (0) must be between 1 and 1024.</c>
/// </remarks>
public sealed class PageRangeHostedServerOptions
{
    /// <summary>The name clients connect to; null (the default) uses the name the server was added with.</summary>
    public string? ListenName { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MaxClients"/>: at least 1.</summary>
    public int? MaxClients { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MaxClientsPerUid"/>: at least 1.</summary>
    public int? MaxClientsPerUid { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MinThreads"/>: from 1 to <see cref="MaxThreads"/>.</summary>
    public int? MinThreads { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MaxThreads"/>: from 1 to 1024.</summary>
    public int? MaxThreads { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MaxConcurrentCallsPerClient"/>: from 1 to 65535.</summary>
    public int? MaxConcurrentCallsPerClient { get; set; }

    /// <summary><see cref="PageRangeServerOptions.MaxQueuedCallsPerClient"/>: from 0 to 65535.</summary>
    public int? MaxQueuedCallsPerClient { get; set; }

    /// <summary><see cref="PageRangeServerOptions.IdleThreadTimeout"/>: from 1 millisecond to one hour.</summary>
    public TimeSpan? IdleThreadTimeout { get; set; }

    /// <summary><see cref="PageRangeServerOptions.ReplyRoomTimeout"/>: from 1 millisecond to one hour.</summary>
    public TimeSpan? ReplyRoomTimeout { get; set; }

    /// <summary><see cref="PageRangeServerOptions.IncludeExceptionDetails"/>.</summary>
    public bool? IncludeExceptionDetails { get; set; }

    /// <summary><see cref="PageRangeServerOptions.StartShrinkerMonitor"/>.</summary>
    public bool? StartShrinkerMonitor { get; set; }

    /// <summary><see cref="PageRangeServerOptions.RunFastHandlersInline"/>.</summary>
    public bool? RunFastHandlersInline { get; set; }

    /// <summary>The settings of every client connection (<see cref="PageRangeServerOptions.ConnectionOptions"/>).</summary>
    public PageRangeConnectionSettings ConnectionOptions { get; } = new();

    /// <summary>
    /// Runs last on the server's <see cref="PageRangeServerOptions"/>, for what the settings above do not carry (for
    /// example <see cref="PageRangeServerOptions.ShrinkerOptions"/>, or a <see cref="PageRangeOptions.LoggerFactory"/>
    /// other than the host's).
    /// </summary>
    /// <remarks>An exception it throws (a setter's <see cref="ArgumentOutOfRangeException"/>) fails the host's start, with the server's name.</remarks>
    public Action<PageRangeServerOptions>? ConfigureServerOptions { get; set; }

    /// <summary>Every rule broken, one message each, naming the server and the setting.</summary>
    internal List<string> Validate(string serverName)
    {
        List<string> errors = [];
        string prefix = $"PageRange server '{serverName}': ";
        var check = new SettingsCheck(prefix, errors);
        check.Range(nameof(MaxClients), MaxClients, 1, int.MaxValue);
        check.Range(nameof(MaxClientsPerUid), MaxClientsPerUid, 1, int.MaxValue);
        check.Range(nameof(MinThreads), MinThreads, 1, PageRangeServerOptions.MaxPoolThreads);
        check.Range(nameof(MaxThreads), MaxThreads, 1, PageRangeServerOptions.MaxPoolThreads);
        check.Range(nameof(MaxConcurrentCallsPerClient), MaxConcurrentCallsPerClient, 1, 65535);
        check.Range(nameof(MaxQueuedCallsPerClient), MaxQueuedCallsPerClient, 0, 65535);
        check.Range(nameof(IdleThreadTimeout), IdleThreadTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1));
        check.Range(nameof(ReplyRoomTimeout), ReplyRoomTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1));
        if (ListenName is { Length: 0 })
        {
            errors.Add($"{prefix}ListenName must not be empty (leave it unset to listen on '{serverName}').");
        }
        ConnectionOptions.Validate($"{prefix}{nameof(ConnectionOptions)}.", errors);
        int maxThreads = MaxThreads ?? new PageRangeServerOptions().MaxThreads;
        if (MinThreads is { } minThreads && minThreads > maxThreads)
        {
            errors.Add($"{prefix}MinThreads ({minThreads}) must not be more than MaxThreads ({maxThreads}).");
        }
        if (errors.Count == 0)
        {
            // What the settings cannot break, the callback can: building the options once runs it and the library's checks.
            try
            {
                _ = CreateServerOptions(loggerFactory: null);
            }
            catch (ArgumentException error)
            {
                errors.Add($"{prefix}the server options were refused ({nameof(ConfigureServerOptions)}?): {error.Message}");
            }
        }
        return errors;
    }

    /// <summary>The library's options with these settings applied, then <see cref="ConfigureServerOptions"/>.</summary>
    /// <param name="loggerFactory">The host's; used unless the callback set a factory of its own.</param>
    internal PageRangeServerOptions CreateServerOptions(Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory)
    {
        var options = new PageRangeServerOptions();
        if (MaxClients is { } maxClients)
        {
            options.MaxClients = maxClients;
        }
        if (MaxClientsPerUid is { } maxClientsPerUid)
        {
            options.MaxClientsPerUid = maxClientsPerUid;
        }
        // MaxThreads first: a MinThreads above the default MaxThreads is fine when MaxThreads is raised too.
        if (MaxThreads is { } maxThreads)
        {
            options.MaxThreads = maxThreads;
        }
        if (MinThreads is { } minThreads)
        {
            options.MinThreads = minThreads;
        }
        if (MaxConcurrentCallsPerClient is { } maxCalls)
        {
            options.MaxConcurrentCallsPerClient = maxCalls;
        }
        if (MaxQueuedCallsPerClient is { } maxQueued)
        {
            options.MaxQueuedCallsPerClient = maxQueued;
        }
        if (IdleThreadTimeout is { } idle)
        {
            options.IdleThreadTimeout = idle;
        }
        if (ReplyRoomTimeout is { } replyRoom)
        {
            options.ReplyRoomTimeout = replyRoom;
        }
        if (IncludeExceptionDetails is { } details)
        {
            options.IncludeExceptionDetails = details;
        }
        if (StartShrinkerMonitor is { } monitor)
        {
            options.StartShrinkerMonitor = monitor;
        }
        if (RunFastHandlersInline is { } inline)
        {
            options.RunFastHandlersInline = inline;
        }
        ConnectionOptions.ApplyTo(options.ConnectionOptions);
        ConfigureServerOptions?.Invoke(options);
        if (options.ConnectionOptions is { LoggerFactory: null } connection)
        {
            connection.LoggerFactory = loggerFactory;
        }
        if (options.StartShrinkerMonitor && loggerFactory is not null && options.ShrinkerOptions is null)
        {
            options.ShrinkerOptions = new ShrinkerOptions { LoggerFactory = loggerFactory };
        }
        if (options.MinThreads > options.MaxThreads)
        {
            throw new ArgumentException($"MinThreads ({options.MinThreads}) is more than MaxThreads ({options.MaxThreads}).");
        }
        return options;
    }
}
