namespace PageRange.Grpc;

/// <summary>Where <see cref="GrpcSerializationContext"/> writes.</summary>
internal enum GrpcSerializationTarget
{
    /// <summary>A pooled array.</summary>
    Array,

    /// <summary>A oneway reservation in the peer's region.</summary>
    Oneway,

    /// <summary>A call reservation in the peer's region.</summary>
    Call,

    /// <summary>A reply reservation in the caller's region.</summary>
    Reply,
}
