namespace PageRange.Transport;

/// <summary>What a <see cref="Doorbell"/> waiter waits for; a struct so the check inlines and nothing is allocated.</summary>
internal interface IWaitCondition
{
    /// <summary>Whether the waiter may stop waiting. Cheap, side-effect free, safe to call repeatedly.</summary>
    bool IsReady { get; }

    /// <summary>
    /// <see cref="IsReady"/> for the looks of a loop that polls between pauses (busy-spin's, and its wait's first look;
    /// spin-then-park's first phase): it may leave out, now and then, a look that costs the peer, and answer from its own
    /// words instead. The looks around a park, a park's first look, and a spin's last are always <see cref="IsReady"/>,
    /// so nothing published is slept through and no park is entered on a look left out.
    /// </summary>
    /// <returns>Whether the waiter may stop waiting (<see langword="false"/> may only mean "not looked this time").</returns>
    bool PollReady();
}

/// <summary>Ready when the ring's producer has published past the consumer's head.</summary>
/// <typeparam name="TRecord">The ring's record type.</typeparam>
internal readonly struct RingHasData<TRecord>(RingConsumer<TRecord> ring) : IWaitCondition
    where TRecord : unmanaged
{
    /// <inheritdoc/>
    public bool IsReady => ring.HasData;

    /// <inheritdoc/>
    public bool PollReady() => IsReady;
}
