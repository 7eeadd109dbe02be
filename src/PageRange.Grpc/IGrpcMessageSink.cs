namespace PageRange.Grpc;

/// <summary>What a stream's reading side does with each message of a frame.</summary>
internal interface IGrpcMessageSink
{
    /// <summary>Takes one message (a slice of the frame's body in our region).</summary>
    /// <returns>False if the stream's reads ended: the frame's remaining messages are dropped.</returns>
    bool Deliver(ReadOnlyMemory<byte> message);
}
