using Grpc.Core;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>The transport's failures as the gRPC statuses a client sees.</summary>
internal static class GrpcClientErrors
{
    internal static RpcException ToRpc(Exception error) => error switch
    {
        RpcException rpc => rpc,
        TimeoutException => new RpcException(new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded", error)),
        OperationCanceledException => new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client.", error)),
        RemoteCallException remote => new RpcException(new Status((StatusCode)(int)remote.Status, remote.Message, error)),
        PageRangeStatusException status => new RpcException(new Status((StatusCode)(int)status.Status, status.Message, error)),
        MessageTooLargeException or RegionFullException => new RpcException(new Status(StatusCode.ResourceExhausted, error.Message, error)),
        ProtocolViolationException => new RpcException(new Status(StatusCode.Internal, error.Message, error)),
        PageRangeException or ObjectDisposedException => new RpcException(new Status(StatusCode.Unavailable, $"The PageRange server is unavailable: {error.Message}", error)),
        _ => new RpcException(new Status(StatusCode.Internal, $"gRPC over PageRange failed: {error.Message}", error)),
    };

    /// <summary>The transport options that carry a call's deadline (so the server's context sees it); null without one.</summary>
    internal static PageRangeCallOptions? TransportOptions(CallOptions options) =>
        options.Deadline is { } deadline && deadline != DateTime.MaxValue
            ? new PageRangeCallOptions { Deadline = new DateTimeOffset(deadline.Kind == DateTimeKind.Unspecified ? DateTime.SpecifyKind(deadline, DateTimeKind.Utc) : deadline.ToUniversalTime()) }
            : null;

    /// <summary>Reads a reply's head; a malformed one ends the connection (the server broke the protocol).</summary>
    internal static GrpcReplyHead ReadReply(PageRangeConnection connection, ReadOnlySpan<byte> payload, out int length)
    {
        try
        {
            return GrpcReplyHead.Read(payload, out length);
        }
        catch (ProtocolViolationException violation)
        {
            connection.ClosePeerViolation(violation);
            throw new RpcException(new Status(StatusCode.Internal, violation.Message, violation));
        }
    }
}
