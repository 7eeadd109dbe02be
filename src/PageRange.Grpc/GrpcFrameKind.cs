namespace PageRange.Grpc;

/// <summary>What a stream frame (a oneway message with <see cref="GrpcWire.FrameCode"/>) carries.</summary>
internal enum GrpcFrameKind : byte
{
    /// <summary>One message of the stream: the rest of the frame.</summary>
    Message = 1,

    /// <summary>The client will write no more messages.</summary>
    HalfClose = 2,

    /// <summary>The reader lets the writer send more: u32 messages, u32 bytes.</summary>
    Credit = 3,

    /// <summary>The server's response headers: a metadata block.</summary>
    Headers = 4,

    /// <summary>Several messages of the stream: u16 count, then per message a u32 length and the message.</summary>
    Messages = 5,
}
