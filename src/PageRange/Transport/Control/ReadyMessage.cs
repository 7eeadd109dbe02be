namespace PageRange.Transport;

/// <summary>The last message of the handshake: the connecting side accepted the listener's hello and region.</summary>
internal sealed record ReadyMessage : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.Ready;
}
