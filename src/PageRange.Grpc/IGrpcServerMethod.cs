using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>A mapped gRPC method, as the server's handler of its code sees it.</summary>
internal interface IGrpcServerMethod
{
    /// <summary>"/package.Service/Method".</summary>
    string FullName { get; }

    /// <summary>Serves one call of the method.</summary>
    ValueTask HandleAsync(Transaction transaction, CallContext context, GrpcServerState state);
}
