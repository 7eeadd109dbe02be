using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>A client's connection as the gRPC invoker uses it (stub: filled in by the streaming step).</summary>
internal sealed class GrpcClientConnection : IAsyncDisposable
{
    private readonly bool _owned;

    internal GrpcClientConnection(PageRangeConnection connection, bool owned)
    {
        Connection = connection;
        _owned = owned;
    }

    internal PageRangeConnection Connection { get; }

    internal bool IsAlive => Connection.IsPeerAlive;

    public async ValueTask DisposeAsync()
    {
        if (_owned)
        {
            await Connection.DisposeAsync().ConfigureAwait(false);
        }
    }
}
