namespace PageRange.Transport;

/// <summary>
/// What a record carries besides its payload's place and kind: the call chain of a two-way call, or the status of an
/// error reply. <c>default</c> for oneway messages and plain replies.
/// </summary>
/// <param name="ChainId">The chain a two-way call belongs to; zero on other records.</param>
/// <param name="Depth">How deep in its chain the call is; zero on other records.</param>
/// <param name="Status">The <see cref="CallStatus"/> of an error reply; <see cref="CallStatus.Ok"/> on other records.</param>
/// <param name="Metadata">The encoded metadata block a call or oneway message carries before its payload (see
/// <see cref="CallMetadataBlock"/>); empty on every other record and on the receiving side.</param>
internal readonly record struct RecordContext(ulong ChainId, uint Depth, CallStatus Status, ReadOnlyMemory<byte> Metadata = default)
{
    /// <summary>The context of a two-way call in <paramref name="chain"/>.</summary>
    internal static RecordContext ForCall(CallChain chain) => new(chain.Id, chain.DepthValue, CallStatus.Ok);

    /// <summary>The context of an error reply with <paramref name="status"/>.</summary>
    internal static RecordContext ForError(CallStatus status) => new(0, 0, status);
}
