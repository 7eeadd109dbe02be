namespace PageRange.Hosting;

/// <summary>Gives the clients added with <see cref="PageRangeServiceCollectionExtensions.AddPageRangeClient(Microsoft.Extensions.DependencyInjection.IServiceCollection, string)"/> by name.</summary>
public interface IPageRangeClientFactory
{
    /// <summary>The client named <paramref name="name"/>: one instance per name, owned by the service provider.</summary>
    /// <param name="name">The name it was added with.</param>
    /// <returns>The client.</returns>
    /// <exception cref="InvalidOperationException">No client has that name.</exception>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">Its options are invalid.</exception>
    PageRangeClient GetClient(string name);
}
