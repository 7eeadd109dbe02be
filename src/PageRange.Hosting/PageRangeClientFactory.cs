using Microsoft.Extensions.DependencyInjection;

namespace PageRange.Hosting;

/// <summary>Resolves the keyed <see cref="PageRangeClient"/> singletons by name.</summary>
internal sealed class PageRangeClientFactory(IServiceProvider services) : IPageRangeClientFactory
{
    public PageRangeClient GetClient(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return services.GetKeyedService<PageRangeClient>(name)
            ?? throw new InvalidOperationException($"No PageRange client is named '{name}': add it with services.AddPageRangeClient(\"{name}\").");
    }
}
