namespace PageRange.Grpc;

/// <summary>How a two-way call of a method code is to be served.</summary>
internal enum GrpcCallKind : byte
{
    /// <summary>A unary call: request in, reply with the response and the status.</summary>
    Unary = 0,

    /// <summary>Opens a stream: its messages travel as frames; the reply carries the status.</summary>
    Stream = 1,
}
