using System.Diagnostics.CodeAnalysis;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>
/// Serves gRPC services on a <see cref="PageRangeServer"/>: the unchanged service class (derived from the generated
/// <c>Greeter.GreeterBase</c>), bound through its generated <c>BindService</c>.
/// </summary>
/// <remarks>
/// Each method gets a PageRange code derived from its full name (<c>/package.Service/Method</c>, see the package's
/// README); mapping two methods whose codes collide fails at mapping time. The service class is found through the
/// <see cref="global::Grpc.Core.BindServiceMethodAttribute"/> its generated base class carries.
/// </remarks>
public static class PageRangeGrpcServerBuilderExtensions
{
    internal const DynamicallyAccessedMemberTypes ServiceMembers =
        DynamicallyAccessedMemberTypes.PublicConstructors | DynamicallyAccessedMemberTypes.PublicMethods | DynamicallyAccessedMemberTypes.NonPublicMethods;

    /// <summary>Serves every method of <paramref name="service"/>, one instance for every call.</summary>
    /// <typeparam name="TService">The service class, derived from the generated base class.</typeparam>
    /// <param name="builder">The server's builder.</param>
    /// <param name="service">The instance that handles every call (concurrently: it must be thread-safe).</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentException"><typeparamref name="TService"/> has no generated base class, or a method's
    /// code collides with a code mapped already.</exception>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(this PageRangeServerBuilder builder, TService service)
        where TService : class =>
        MapGrpcService(builder, service, new PageRangeGrpcServiceOptions());

    /// <summary>Serves every method of <paramref name="service"/>, one instance for every call, with interceptors.</summary>
    /// <inheritdoc cref="MapGrpcService{TService}(PageRangeServerBuilder, TService)"/>
    /// <param name="builder">The server's builder.</param>
    /// <param name="service">The instance that handles every call (concurrently: it must be thread-safe).</param>
    /// <param name="options">Interceptors and other options of the service.</param>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(
        this PageRangeServerBuilder builder, TService service, PageRangeGrpcServiceOptions options)
        where TService : class
    {
        ArgumentNullException.ThrowIfNull(service);
        return GrpcServiceMapper.Map(builder, service, () => service, options);
    }

    /// <summary>Serves every method of <typeparamref name="TService"/>, a new instance for each call (as ASP.NET Core does).</summary>
    /// <inheritdoc cref="MapGrpcService{TService}(PageRangeServerBuilder, TService)"/>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(this PageRangeServerBuilder builder)
        where TService : class, new() =>
        MapGrpcService(builder, static () => new TService(), new PageRangeGrpcServiceOptions());

    /// <summary>Serves every method of <typeparamref name="TService"/>, a new instance for each call, with interceptors.</summary>
    /// <inheritdoc cref="MapGrpcService{TService}(PageRangeServerBuilder, TService, PageRangeGrpcServiceOptions)"/>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(
        this PageRangeServerBuilder builder, PageRangeGrpcServiceOptions options)
        where TService : class, new() =>
        MapGrpcService(builder, static () => new TService(), options);

    /// <summary>Serves every method of <typeparamref name="TService"/>, an instance from <paramref name="factory"/> for each call.</summary>
    /// <inheritdoc cref="MapGrpcService{TService}(PageRangeServerBuilder, TService)"/>
    /// <param name="builder">The server's builder.</param>
    /// <param name="factory">Makes the instance of one call; called once more while mapping, to learn the methods.</param>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(this PageRangeServerBuilder builder, Func<TService> factory)
        where TService : class =>
        MapGrpcService(builder, factory, new PageRangeGrpcServiceOptions());

    /// <summary>Serves every method of <typeparamref name="TService"/>, an instance from <paramref name="factory"/> for each call, with interceptors.</summary>
    /// <inheritdoc cref="MapGrpcService{TService}(PageRangeServerBuilder, Func{TService})"/>
    /// <param name="builder">The server's builder.</param>
    /// <param name="factory">Makes the instance of one call; called once more while mapping, to learn the methods.</param>
    /// <param name="options">Interceptors and other options of the service.</param>
    public static PageRangeServerBuilder MapGrpcService<[DynamicallyAccessedMembers(ServiceMembers)] TService>(
        this PageRangeServerBuilder builder, Func<TService> factory, PageRangeGrpcServiceOptions options)
        where TService : class
    {
        ArgumentNullException.ThrowIfNull(factory);
        return GrpcServiceMapper.Map(builder, null, factory, options);
    }
}
