using System.Buffers;
using Grpc.Core;
using PageRange.Transport;

namespace PageRange.Grpc;

/// <summary>
/// Serializes one message with its method's marshaller, after a head of known size: straight into a reservation in the
/// peer's region when the marshaller announces the length first (<see cref="SetPayloadLength"/>, as protobuf does),
/// which then holds exactly head + message; otherwise into a pooled buffer, copied once into the reservation.
/// </summary>
/// <remarks>One use: <see cref="Serialize{T}"/>, write the head into the first <c>head</c> bytes, commit (or dispose).</remarks>
internal sealed class GrpcSerializationContext : SerializationContext, IBufferWriter<byte>, IDisposable
{
    private readonly GrpcSerializationTarget _target;
    private readonly PageRangeConnection? _connection;
    private readonly Transaction _call;
    private readonly PageRangeCallOptions? _options;
    private readonly CancellationToken _cancellationToken;
    private int _head;
    private ReservedBuffer _reserved;
    private bool _hasReserved;
    private byte[]? _array;
    private int _arrayWritten;
    private bool _completed;

    private GrpcSerializationContext(
        GrpcSerializationTarget target, PageRangeConnection? connection, Transaction call, PageRangeCallOptions? options = null, CancellationToken cancellationToken = default)
    {
        _target = target;
        _connection = connection;
        _call = call;
        _options = options;
        _cancellationToken = cancellationToken;
    }

    /// <summary>Into a pooled array (for a request sent with per-call options, which the transport copies).</summary>
    internal static GrpcSerializationContext ForArray() => new(GrpcSerializationTarget.Array, null, default);

    /// <summary>Into a call reservation in <paramref name="connection"/>'s peer region, after the metadata block of
    /// <paramref name="options"/> (a deadline) when given; waiting for room ends with <paramref name="cancellationToken"/>
    /// or the deadline (a <see cref="TimeoutException"/>).</summary>
    internal static GrpcSerializationContext ForCall(PageRangeConnection connection, PageRangeCallOptions? options = null, CancellationToken cancellationToken = default) =>
        new(GrpcSerializationTarget.Call, connection, default, options, cancellationToken);

    /// <summary>Where the head starts in <see cref="Reserved"/>: after the transport's metadata block, if any.</summary>
    internal int HeadOffset { get; private set; }

    /// <summary>Into a oneway reservation in <paramref name="connection"/>'s peer region.</summary>
    internal static GrpcSerializationContext ForOneway(PageRangeConnection connection) => new(GrpcSerializationTarget.Oneway, connection, default);

    /// <summary>Into a reply reservation for <paramref name="call"/>.</summary>
    internal static GrpcSerializationContext ForReply(Transaction call) => new(GrpcSerializationTarget.Reply, null, call);

    /// <summary>Whether the message went through the pooled buffer although the target was a reservation (tests look).</summary>
    internal bool UsedFallback { get; private set; }

    /// <summary>The reservation: head then message. Valid after <see cref="Serialize{T}"/> for a reservation target.</summary>
    internal ReservedBuffer Reserved => _reserved;

    /// <summary>The array's bytes: head then message. Valid after <see cref="Serialize{T}"/> for the array target.</summary>
    internal Memory<byte> Written => _array.AsMemory(0, _arrayWritten);

    /// <summary>Whether the bytes are in a reservation (else in the array).</summary>
    internal bool IsReserved => _hasReserved;

    /// <summary>The bytes of head and message together.</summary>
    internal int TotalLength => _hasReserved ? _reserved.WrittenCount : _arrayWritten;

    /// <summary>Serializes <paramref name="message"/> after room for a head of <paramref name="head"/> bytes.</summary>
    /// <exception cref="RpcException">The marshaller failed (<see cref="StatusCode.Internal"/>) or the message does not fit
    /// the peer's region (<see cref="StatusCode.ResourceExhausted"/>).</exception>
    internal void Serialize<T>(Marshaller<T> marshaller, T message, int head)
    {
        _head = head;
        try
        {
            marshaller.ContextualSerializer(message, this);
            if (!_completed)
            {
                Complete();
            }
        }
        // What the reservation throws passes as it is (a TimeoutException: the deadline passed while it waited for room).
        catch (Exception error) when (error is not (RpcException or PageRangeException or OperationCanceledException or ObjectDisposedException or TimeoutException))
        {
            throw new RpcException(new Status(StatusCode.Internal, "Error starting gRPC call: the message could not be serialized.", error));
        }
        catch (MessageTooLargeException error)
        {
            throw new RpcException(new Status(StatusCode.ResourceExhausted, $"The message is too large for the peer's region: {error.Message}", error));
        }
    }

    /// <summary>Serializes only a head (no message).</summary>
    internal void SerializeEmpty(int head)
    {
        _head = head;
        Allocate(head);
        _completed = true;
    }

    /// <inheritdoc/>
    public override void SetPayloadLength(int payloadLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(payloadLength);
        if (!_hasReserved && _array is null)
        {
            Allocate(checked(_head + payloadLength));
        }
    }

    /// <inheritdoc/>
    public override IBufferWriter<byte> GetBufferWriter()
    {
        if (!_hasReserved && _array is null)
        {
            // The marshaller did not announce the length: write into a pooled buffer, copied once at Complete.
            UsedFallback = _target != GrpcSerializationTarget.Array;
            _array = ArrayPool<byte>.Shared.Rent(Math.Max(_head + 256, 1024));
            _arrayWritten = _head;
        }
        return this;
    }

    /// <inheritdoc/>
    public override void Complete()
    {
        _completed = true;
        if (!_hasReserved && _array is null)
        {
            Allocate(_head);
            return;
        }
        if (UsedFallback && !_hasReserved)
        {
            byte[] array = _array!;
            int written = _arrayWritten;
            _array = null;
            try
            {
                Allocate(written);
                array.AsSpan(_head, written - _head).CopyTo(_reserved.GetSpan(written - _head));
                _reserved.Advance(written - _head);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(array);
            }
        }
    }

    /// <inheritdoc/>
    public override void Complete(byte[] payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        _completed = true;
        Allocate(checked(_head + payload.Length));
        payload.CopyTo(GetSpan(payload.Length));
        Advance(payload.Length);
    }

    /// <inheritdoc/>
    public void Advance(int count)
    {
        if (_hasReserved)
        {
            _reserved.Advance(count);
            return;
        }
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _array!.Length - _arrayWritten);
        _arrayWritten += count;
    }

    /// <inheritdoc/>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        if (_hasReserved)
        {
            return _reserved.GetMemory(sizeHint);
        }
        EnsureArray(sizeHint);
        return _array.AsMemory(_arrayWritten);
    }

    /// <inheritdoc/>
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        if (_hasReserved)
        {
            return _reserved.GetSpan(sizeHint);
        }
        EnsureArray(sizeHint);
        return _array.AsSpan(_arrayWritten);
    }

    /// <summary>Gives back the pooled array, and the reservation if it was not committed.</summary>
    public void Dispose()
    {
        if (_hasReserved)
        {
            _reserved.Dispose();
        }
        if (_array is { } array)
        {
            _array = null;
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    private void EnsureArray(int sizeHint)
    {
        if (_array is null)
        {
            throw new InvalidOperationException("GetBufferWriter or SetPayloadLength comes first.");
        }
        int need = Math.Max(sizeHint, 1);
        if (_array.Length - _arrayWritten >= need)
        {
            return;
        }
        byte[] grown = ArrayPool<byte>.Shared.Rent(checked(Math.Max(_array.Length * 2, _arrayWritten + need)));
        _array.AsSpan(0, _arrayWritten).CopyTo(grown);
        ArrayPool<byte>.Shared.Return(_array);
        _array = grown;
    }

    private void Allocate(int total)
    {
        switch (_target)
        {
            case GrpcSerializationTarget.Array:
                _array = ArrayPool<byte>.Shared.Rent(Math.Max(total, 1));
                _arrayWritten = _head;
                return;
            case GrpcSerializationTarget.Oneway:
                _reserved = _connection!.Reserve(total, oneway: true);
                break;
            case GrpcSerializationTarget.Call when _options is not null:
                _reserved = _connection!.ReserveCall(total, _options, out int metadataLength, _cancellationToken);
                HeadOffset = metadataLength;
                break;
            case GrpcSerializationTarget.Call:
                _reserved = _connection!.Reserve(total, oneway: false, _cancellationToken);
                break;
            default:
                _reserved = _call.ReserveReply(total);
                break;
        }
        _hasReserved = true;
        _reserved.Advance(_head);
    }
}
