namespace PageRange.Allocation;

/// <summary>
/// A oneway reservation left less than a tenth of the data area in the oneway quota, and its sender holds more than
/// 50 live oneway buffers or more than a quarter of the area (binder's <c>BR_ONEWAY_SPAM_SUSPECT</c>).
/// </summary>
internal sealed class OnewaySpamSuspectedEventArgs : EventArgs
{
    internal OnewaySpamSuspectedEventArgs(int senderPid, long offset, int bufferCount, long totalBytes, long freeOnewaySpace)
    {
        SenderPid = senderPid;
        Offset = offset;
        BufferCount = bufferCount;
        TotalBytes = totalBytes;
        FreeOnewaySpace = freeOnewaySpace;
    }

    /// <summary>The suspected sender.</summary>
    internal int SenderPid { get; }

    /// <summary>The reservation that crossed the threshold; it succeeded.</summary>
    internal long Offset { get; }

    /// <summary>The sender's live oneway buffers, the new one included.</summary>
    internal int BufferCount { get; }

    /// <summary>The padded bytes of those buffers.</summary>
    internal long TotalBytes { get; }

    /// <summary>The oneway quota left after the reservation.</summary>
    internal long FreeOnewaySpace { get; }

    /// <inheritdoc/>
    public override string ToString() =>
        $"pid {SenderPid} spamming oneway? {BufferCount} buffers allocated for a total size of {TotalBytes}";
}
