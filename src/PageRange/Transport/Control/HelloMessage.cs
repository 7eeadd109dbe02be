namespace PageRange.Transport;

/// <summary>
/// What a side announces in the handshake; it travels with the memfd of the region the side receives in.
/// </summary>
/// <param name="ProtocolVersion">The version of this protocol the sender speaks. When it differs from ours, the other
/// fields were not decoded and are zero.</param>
/// <param name="Pid">The sender's process id in its own pid namespace, for messages; <c>SO_PEERCRED</c> is what is trusted.</param>
/// <param name="RegionSize">The size of the sender's receive region, which the memfd must match.</param>
/// <param name="TransactionRingCapacity">Records in that region's transaction ring.</param>
/// <param name="FreeRingCapacity">Records in that region's free ring.</param>
internal sealed record HelloMessage(int ProtocolVersion, int Pid, long RegionSize, int TransactionRingCapacity, int FreeRingCapacity)
    : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.Hello;
}
