namespace PageRange.Grpc;

/// <summary>A client's stream, as the connection's frame reader sees it.</summary>
internal interface IGrpcClientStream
{
    /// <summary>Takes a frame from the server (the connection's reader, one at a time, in order).</summary>
    /// <exception cref="ProtocolViolationException">The frame breaks the protocol.</exception>
    void OnFrame(GrpcFrameKind kind, ReadOnlyMemory<byte> body);

    /// <summary>The connection ended under the stream.</summary>
    void OnConnectionLost(Exception error);
}
