using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using PageRange.Hosting;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Hosting;

/// <summary>Builds the generic hosts of the hosting tests: no default providers, an optional log capture, a chosen shutdown timeout.</summary>
internal static class HostingTestHost
{
    /// <summary>Small, quiet servers: a 1 MiB region, no shared shrinker monitor (other tests own it).</summary>
    public static void Small(PageRangeHostedServerOptions options)
    {
        options.MaxThreads = 4;
        options.StartShrinkerMonitor = false;
        options.ConnectionOptions.RegionSize = 1L << 20;
    }

    public static IHost Build(Action<IServiceCollection> configure, ILoggerProvider? logs = null, TimeSpan? shutdownTimeout = null)
    {
        HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.ClearProviders();
        if (logs is not null)
        {
            builder.Logging.SetMinimumLevel(LogLevel.Trace).AddProvider(logs);
        }
        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = shutdownTimeout ?? TestTimeouts.Long);
        configure(builder.Services);
        return builder.Build();
    }

    /// <summary>Waits, bounded, until <paramref name="condition"/> holds.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > TestTimeouts.Long)
            {
                throw new TimeoutException($"Waited {TestTimeouts.Long} for {what}.");
            }
            await Task.Delay(10);
        }
    }
}
