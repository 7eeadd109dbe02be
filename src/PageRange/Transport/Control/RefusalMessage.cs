namespace PageRange.Transport;

/// <summary>Why a side refuses the connection; it closes the socket right after sending this.</summary>
/// <param name="Reason">A sentence for the other side's exception message.</param>
internal sealed record RefusalMessage(string Reason) : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.Refusal;
}
