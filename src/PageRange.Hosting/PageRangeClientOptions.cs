using Microsoft.Extensions.Logging;

namespace PageRange.Hosting;

/// <summary>
/// The settings of a client added by <see cref="PageRangeServiceCollectionExtensions.AddPageRangeClient(Microsoft.Extensions.DependencyInjection.IServiceCollection, string)"/>:
/// named options (the client's name), bound from configuration or set in code, and checked when the host starts.
/// </summary>
/// <remarks>
/// After a connection that lasted <see cref="HealthyConnectionTime"/> is lost, the next use tries to connect again at
/// once; each failed attempt doubles the wait before the next one, from <see cref="ReconnectDelay"/> up to
/// <see cref="MaxReconnectDelay"/>, spread by <see cref="ReconnectJitter"/>. A connection lost sooner counts as a failed
/// attempt. Uses during a wait fail at once with <see cref="ServerUnavailableException"/>.
/// </remarks>
public sealed class PageRangeClientOptions
{
    /// <summary>The server to connect to; null (the default) uses the client's name.</summary>
    public string? ServerName { get; set; }

    /// <summary>The wait after the first failed attempt to connect.</summary>
    /// <remarks>Defaults to 100 milliseconds. From 1 millisecond to <see cref="MaxReconnectDelay"/>.</remarks>
    public TimeSpan ReconnectDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest wait between two attempts, however many failed.</summary>
    /// <remarks>Defaults to 10 seconds. From <see cref="ReconnectDelay"/> to one hour.</remarks>
    public TimeSpan MaxReconnectDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How much each wait is spread at random, as a fraction of it (0.2: from 80% to 120%), so that many clients of
    /// one restarted server do not all knock at the same instant.
    /// </summary>
    /// <remarks>Defaults to 0.2. From 0 (no spread) to 1.</remarks>
    public double ReconnectJitter { get; set; } = 0.2;

    /// <summary>
    /// How long a connection must last for its loss to reset the backoff. A connection lost sooner counts as one more
    /// failed attempt, so that a server that admits the client and drops it at once (crashing as it starts, failing the
    /// session, closing at its limits) is retried after the backoff instead of in a loop of handshakes.
    /// </summary>
    /// <remarks>
    /// Defaults to 10 seconds, the default <see cref="MaxReconnectDelay"/>: while it is at least that, however soon the
    /// server drops each connection, the client starts a handshake at most about once per <see cref="MaxReconnectDelay"/>
    /// once the backoff reached its cap. Zero counts every connection whose handshake completed as a success. From zero
    /// to one hour.
    /// </remarks>
    public TimeSpan HealthyConnectionTime { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The settings of the connection (this side's region, timeouts, allowed uids).</summary>
    public PageRangeConnectionSettings ConnectionOptions { get; } = new();

    /// <summary>
    /// Runs last on the connection's <see cref="PageRangeOptions"/>, for what <see cref="ConnectionOptions"/> does not
    /// carry (for example a <see cref="PageRangeOptions.LoggerFactory"/> other than the host's).
    /// </summary>
    public Action<PageRangeOptions>? ConfigureConnectionOptions { get; set; }

    /// <summary>Every rule broken, one message each, naming the client and the setting.</summary>
    internal List<string> Validate(string clientName)
    {
        List<string> errors = [];
        string prefix = $"PageRange client '{clientName}': ";
        var check = new SettingsCheck(prefix, errors);
        check.Range(nameof(ReconnectDelay), ReconnectDelay, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1));
        check.Range(nameof(MaxReconnectDelay), MaxReconnectDelay, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1));
        if (MaxReconnectDelay < ReconnectDelay)
        {
            errors.Add($"{prefix}MaxReconnectDelay ({MaxReconnectDelay}) must not be less than ReconnectDelay ({ReconnectDelay}).");
        }
        check.Range(nameof(ReconnectJitter), ReconnectJitter, 0.0, 1.0);
        check.Range(nameof(HealthyConnectionTime), HealthyConnectionTime, TimeSpan.Zero, TimeSpan.FromHours(1));
        if (ServerName is { Length: 0 })
        {
            errors.Add($"{prefix}ServerName must not be empty (leave it unset to connect to '{clientName}').");
        }
        else
        {
            // Checked here, at start-up: a name no listener can have (too long, a NUL) failed every attempt to connect
            // with an ArgumentException, which the client took for an unreachable server and retried for ever.
            try
            {
                PageRange.Transport.ControlHandshake.ValidateName(ServerName ?? clientName);
            }
            catch (ArgumentException error)
            {
                string shown = (ServerName ?? clientName).Replace("\0", "\\0", StringComparison.Ordinal);
                errors.Add($"{prefix}{(ServerName is null ? "its name (also its server's)" : "ServerName")} '{shown}' cannot be a server's name: {error.Message}");
            }
        }
        ConnectionOptions.Validate($"{prefix}{nameof(ConnectionOptions)}.", errors);
        if (errors.Count == 0)
        {
            try
            {
                _ = CreateConnectionOptions(loggerFactory: null);
            }
            catch (ArgumentException error)
            {
                errors.Add($"{prefix}the connection options were refused ({nameof(ConfigureConnectionOptions)}?): {error.Message}");
            }
        }
        return errors;
    }

    /// <summary>The library's options with these settings applied, then <see cref="ConfigureConnectionOptions"/>.</summary>
    /// <param name="loggerFactory">The host's; used unless the callback set a factory of its own.</param>
    internal PageRangeOptions CreateConnectionOptions(ILoggerFactory? loggerFactory)
    {
        var options = new PageRangeOptions();
        ConnectionOptions.ApplyTo(options);
        ConfigureConnectionOptions?.Invoke(options);
        options.LoggerFactory ??= loggerFactory;
        return options;
    }
}
