namespace PageRange.Transport;

/// <summary>
/// The callee failed call <paramref name="CallId"/> and could not place even an error reply in the caller's region (it
/// is full, or the kernel had no page for it): binder's <c>BR_FAILED_REPLY</c>, which needs no buffer. Sent over the
/// control socket so that the caller fails at once instead of waiting out its call timeout.
/// </summary>
/// <param name="CallId">The transaction id of the call.</param>
internal sealed record FailedReplyMessage(ulong CallId) : ControlMessage
{
    /// <inheritdoc/>
    public override ControlMessageKind Kind => ControlMessageKind.FailedReply;
}
