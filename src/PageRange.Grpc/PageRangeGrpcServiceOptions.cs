using Grpc.Core.Interceptors;

namespace PageRange.Grpc;

/// <summary>How a gRPC service is served over PageRange (<see cref="PageRangeGrpcServerBuilderExtensions"/>).</summary>
public sealed class PageRangeGrpcServiceOptions
{
    /// <summary>
    /// Server interceptors, run for every method of the service; the first in the list is the outermost (it runs first
    /// and sees the call last), as in ASP.NET Core's <c>GrpcServiceOptions.Interceptors</c>.
    /// </summary>
    public IList<Interceptor> Interceptors { get; } = [];
}
