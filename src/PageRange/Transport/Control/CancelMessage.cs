namespace PageRange.Transport;

/// <summary>The caller gave up on call <paramref name="CallId"/> (timeout or cancellation); the callee's handler sees it through its token.</summary>
/// <param name="CallId">The transaction id of the call.</param>
internal sealed record CancelMessage(ulong CallId) : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.Cancel;
}
