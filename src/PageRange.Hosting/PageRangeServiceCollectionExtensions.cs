using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using PageRange.Server;

namespace PageRange.Hosting;

/// <summary>Adds PageRange servers (hosted services) and clients (keyed singletons) to a service collection.</summary>
/// <remarks>
/// Servers and clients are named: the name is their options' name, their key in the service collection, and by default
/// the PageRange name the server listens on and the client connects to. Their options are checked when the host starts
/// (<c>ValidateOnStart</c>); a bad setting fails the start with an <see cref="OptionsValidationException"/> naming it.
/// The host's <see cref="ILoggerFactory"/> becomes <see cref="PageRangeOptions.LoggerFactory"/> unless one is set.
/// </remarks>
public static class PageRangeServiceCollectionExtensions
{
    /// <summary>Adds a server named <paramref name="name"/>, run with the host, with default options.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The server's name: what clients connect to.</param>
    /// <param name="configure">Maps codes to handlers (<see cref="PageRangeServerBuilder.Map(uint, Action{Transport.Transaction, CallContext})"/>).</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentException">The name is empty, or a server of that name was added already.</exception>
    public static IServiceCollection AddPageRangeServer(this IServiceCollection services, string name, Action<PageRangeServerBuilder> configure) =>
        AddServerCore(services, name, configure);

    /// <summary>Adds a server named <paramref name="name"/>, run with the host, with options set in code.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The server's name: what clients connect to.</param>
    /// <param name="configureOptions">Sets the server's options; runs when the host starts.</param>
    /// <param name="configure">Maps codes to handlers.</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentException">The name is empty, or a server of that name was added already.</exception>
    public static IServiceCollection AddPageRangeServer(
        this IServiceCollection services, string name, Action<PageRangeHostedServerOptions> configureOptions, Action<PageRangeServerBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configureOptions);
        AddServerCore(services, name, configure);
        services.Configure(name, configureOptions);
        return services;
    }

    /// <summary>Adds a server named <paramref name="name"/>, run with the host, with options bound from <paramref name="configuration"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The server's name: what clients connect to.</param>
    /// <param name="configuration">The section to bind, e.g. <c>PageRange:Servers:calc</c> with <c>MaxThreads</c>,
    /// <c>ConnectionOptions:RegionSize</c> and the other names of <see cref="PageRangeHostedServerOptions"/>.</param>
    /// <param name="configure">Maps codes to handlers.</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentException">The name is empty, or a server of that name was added already.</exception>
    public static IServiceCollection AddPageRangeServer(
        this IServiceCollection services, string name, IConfiguration configuration, Action<PageRangeServerBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        AddServerCore(services, name, configure);
        services.AddOptions<PageRangeHostedServerOptions>(name).Bind(configuration);
        return services;
    }

    /// <summary>Adds a client named <paramref name="name"/> that connects to the server of the same name, with default options.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The client's name; also the server's unless <see cref="PageRangeClientOptions.ServerName"/> says otherwise.</param>
    /// <returns>The service collection.</returns>
    /// <remarks>Resolve it as a keyed <see cref="PageRangeClient"/> or through <see cref="IPageRangeClientFactory"/>. It connects on first use.</remarks>
    /// <exception cref="ArgumentException">The name is empty, or a client of that name was added already.</exception>
    public static IServiceCollection AddPageRangeClient(this IServiceCollection services, string name) =>
        AddClientCore(services, name);

    /// <summary>Adds a client named <paramref name="name"/>, with options set in code.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The client's name; also the server's unless <see cref="PageRangeClientOptions.ServerName"/> says otherwise.</param>
    /// <param name="configureOptions">Sets the client's options; runs when the client is first resolved or the host starts.</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentException">The name is empty, or a client of that name was added already.</exception>
    public static IServiceCollection AddPageRangeClient(this IServiceCollection services, string name, Action<PageRangeClientOptions> configureOptions)
    {
        ArgumentNullException.ThrowIfNull(configureOptions);
        AddClientCore(services, name);
        services.Configure(name, configureOptions);
        return services;
    }

    /// <summary>Adds a client named <paramref name="name"/>, with options bound from <paramref name="configuration"/>.</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="name">The client's name; also the server's unless <see cref="PageRangeClientOptions.ServerName"/> says otherwise.</param>
    /// <param name="configuration">The section to bind, with <c>ServerName</c>, <c>ReconnectDelay</c>, <c>ConnectionOptions:CallTimeout</c>
    /// and the other names of <see cref="PageRangeClientOptions"/>.</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentException">The name is empty, or a client of that name was added already.</exception>
    public static IServiceCollection AddPageRangeClient(this IServiceCollection services, string name, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        AddClientCore(services, name);
        services.AddOptions<PageRangeClientOptions>(name).Bind(configuration);
        return services;
    }

    private static IServiceCollection AddServerCore(IServiceCollection services, string name, Action<PageRangeServerBuilder> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(configure);
        if (IsKeyRegistered<PageRangeHostedServer>(services, name))
        {
            throw new ArgumentException($"A PageRange server named '{name}' was added already.", nameof(name));
        }
        services.AddOptions<PageRangeHostedServerOptions>(name).ValidateOnStart();
        services.AddSingleton<IValidateOptions<PageRangeHostedServerOptions>>(
            new NamedOptionsValidator<PageRangeHostedServerOptions>(name, static (options, serverName) => options.Validate(serverName)));
        services.AddKeyedSingleton(name, (provider, _) => new PageRangeHostedServer(
            name, configure, provider.GetRequiredService<IOptionsMonitor<PageRangeHostedServerOptions>>(), provider.GetService<ILoggerFactory>()));
        // One registration per server: AddHostedService would keep only the first of one implementation type.
        services.AddSingleton<IHostedService>(provider => provider.GetRequiredKeyedService<PageRangeHostedServer>(name));
        return services;
    }

    private static IServiceCollection AddClientCore(IServiceCollection services, string name)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (IsKeyRegistered<PageRangeClient>(services, name))
        {
            throw new ArgumentException($"A PageRange client named '{name}' was added already.", nameof(name));
        }
        services.AddOptions<PageRangeClientOptions>(name).ValidateOnStart();
        services.AddSingleton<IValidateOptions<PageRangeClientOptions>>(
            new NamedOptionsValidator<PageRangeClientOptions>(name, static (options, clientName) => options.Validate(clientName)));
        services.AddKeyedSingleton(name, (provider, _) => new PageRangeClient(
            name, provider.GetRequiredService<IOptionsMonitor<PageRangeClientOptions>>().Get(name), provider.GetService<ILoggerFactory>(),
            provider.GetService<TimeProvider>() ?? TimeProvider.System));
        services.TryAddSingleton<IPageRangeClientFactory, PageRangeClientFactory>();
        return services;
    }

    private static bool IsKeyRegistered<TService>(IServiceCollection services, string name) =>
        services.Any(descriptor => descriptor.IsKeyedService && descriptor.ServiceType == typeof(TService) && Equals(descriptor.ServiceKey, name));
}
