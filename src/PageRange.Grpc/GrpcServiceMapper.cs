using System.Diagnostics.CodeAnalysis;
using PageRange.Server;

namespace PageRange.Grpc;

/// <summary>Binds a service's methods to codes of a server builder (stub).</summary>
internal static class GrpcServiceMapper
{
    internal static PageRangeServerBuilder Map<[DynamicallyAccessedMembers(PageRangeGrpcServerBuilderExtensions.ServiceMembers)] TService>(
        PageRangeServerBuilder builder, TService? instance, Func<TService> factory, PageRangeGrpcServiceOptions options)
        where TService : class
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        _ = instance;
        _ = factory;
        throw new NotImplementedException();
    }
}
