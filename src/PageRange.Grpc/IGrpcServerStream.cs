namespace PageRange.Grpc;

/// <summary>A server's stream, as the frame handler sees it.</summary>
internal interface IGrpcServerStream
{
    /// <summary>Takes a frame from the client (run by the server's oneway handler, one at a time per client, in order).</summary>
    /// <exception cref="ProtocolViolationException">The frame breaks the protocol.</exception>
    void OnFrame(GrpcFrameKind kind, ReadOnlyMemory<byte> body);
}
