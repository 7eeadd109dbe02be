using System.Buffers;
using Grpc.Core;

namespace PageRange.Grpc;

/// <summary>A message's bytes, in place in our region, for its method's marshaller.</summary>
internal sealed class GrpcDeserializationContext(ReadOnlyMemory<byte> payload) : DeserializationContext
{
    /// <inheritdoc/>
    public override int PayloadLength => payload.Length;

    /// <inheritdoc/>
    public override byte[] PayloadAsNewBuffer() => payload.ToArray();

    /// <inheritdoc/>
    public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(payload);

    /// <summary>Deserializes <paramref name="payload"/> with <paramref name="marshaller"/>.</summary>
    /// <exception cref="RpcException"><see cref="StatusCode.Internal"/>: the bytes are not a valid message.</exception>
    internal static T Deserialize<T>(Marshaller<T> marshaller, ReadOnlyMemory<byte> payload, string what)
    {
        try
        {
            return marshaller.ContextualDeserializer(new GrpcDeserializationContext(payload));
        }
        catch (Exception error) when (error is not RpcException)
        {
            throw new RpcException(new Status(StatusCode.Internal, $"Failed to deserialize the {what} message.", error));
        }
    }
}
