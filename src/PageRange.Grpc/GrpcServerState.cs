using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using PageRange.Server;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// The gRPC part of one server: its methods by code (to refuse collisions) and its open streams by connection and
/// stream id (for the frame handler). One per <see cref="PageRangeServerBuilder"/>.
/// </summary>
internal sealed class GrpcServerState
{
    private static readonly ConditionalWeakTable<PageRangeServerBuilder, GrpcServerState> States = [];

    private readonly Dictionary<uint, string> _methods = [];
    private readonly ConcurrentDictionary<(PageRangeConnection Connection, ulong StreamId), IGrpcServerStream> _streams = new();

    /// <summary>Streams open now (tests look).</summary>
    internal int OpenStreams => _streams.Count;

    /// <summary>The state of <paramref name="builder"/>, made (with the frame handler mapped) on first use.</summary>
    internal static GrpcServerState For(PageRangeServerBuilder builder)
    {
        lock (States)
        {
            if (States.TryGetValue(builder, out GrpcServerState? state))
            {
                return state;
            }
            state = new GrpcServerState();
            builder.Map(GrpcWire.FrameCode, state.OnFrameAsync);
            States.Add(builder, state);
            return state;
        }
    }

    /// <summary>Maps <paramref name="method"/> on <paramref name="builder"/>.</summary>
    /// <exception cref="ArgumentException">Its code is taken already (by another method, or by a handler of the builder).</exception>
    internal void Add(PageRangeServerBuilder builder, IGrpcServerMethod method)
    {
        uint code = GrpcWire.MethodCode(method.FullName);
        if (_methods.TryGetValue(code, out string? other))
        {
            throw new ArgumentException(other == method.FullName
                ? $"The gRPC method {method.FullName} is mapped already."
                : $"The gRPC methods {other} and {method.FullName} have the same code 0x{code:X8}; rename one of them.", nameof(method));
        }
        builder.Map(code, (transaction, context) => method.HandleAsync(transaction, context, this));
        _methods.Add(code, method.FullName);
    }

    internal bool TryRegister(PageRangeConnection connection, ulong streamId, IGrpcServerStream stream) =>
        _streams.TryAdd((connection, streamId), stream);

    internal void Unregister(PageRangeConnection connection, ulong streamId) => _streams.TryRemove((connection, streamId), out _);

    /// <summary>A stream frame from a client: to its stream; a frame of a stream that ended is dropped.</summary>
    private ValueTask OnFrameAsync(Transaction transaction, CallContext context)
    {
        if (transaction.IsTwoWay)
        {
            transaction.ReplyError(CallStatus.FailedPrecondition, "gRPC stream frames are oneway messages.");
            return ValueTask.CompletedTask;
        }
        try
        {
            (GrpcFrameKind kind, ulong streamId) = GrpcFrames.ReadHead(transaction.Payload);
            if (_streams.TryGetValue((context.Connection, streamId), out IGrpcServerStream? stream))
            {
                stream.OnFrame(kind, transaction.Memory[GrpcFrames.HeadLength..]);
            }
        }
        catch (ProtocolViolationException violation)
        {
            context.Connection.ClosePeerViolation(violation);
        }
        return ValueTask.CompletedTask;
    }
}
