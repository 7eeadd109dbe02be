namespace PageRange.Transport;

/// <summary>One message on a connection's control socket; <see cref="ControlFrameCodec"/> frames and encodes it.</summary>
/// <remarks>
/// The control socket carries only the handshake and rare messages (a call's cancellation); transactions go through
/// the shared regions. On the wire a message is a MessagePack array whose first element is its <see cref="Kind"/>.
/// </remarks>
internal abstract record ControlMessage
{
    /// <summary>Which message this is; the first element of its array on the wire.</summary>
    public abstract ControlMessageKind Kind { get; }
}
