namespace PageRange.Transport;

/// <summary>What a <see cref="Doorbell"/> waiter waits for; a struct so the check inlines and nothing is allocated.</summary>
internal interface IWaitCondition
{
    /// <summary>Whether the waiter may stop waiting. Cheap, side-effect free, safe to call repeatedly.</summary>
    bool IsReady { get; }
}

/// <summary>Ready when the ring's producer has published past the consumer's head.</summary>
/// <typeparam name="TRecord">The ring's record type.</typeparam>
internal readonly struct RingHasData<TRecord>(RingConsumer<TRecord> ring) : IWaitCondition
    where TRecord : unmanaged
{
    /// <inheritdoc/>
    public bool IsReady => ring.HasData;
}
