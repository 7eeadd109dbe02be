namespace PageRange.Transport;

/// <summary>
/// What a region's creator (its receiver) promises about how it waits, in <see cref="RegionHeaderLayout.Capabilities"/>.
/// </summary>
/// <remarks>
/// The word sits in padding that version-2 readers before issue 12 never read and always wrote as zero, so an old peer
/// announces nothing and ignores what we announce: both sides then keep the symmetric fences. Unknown bits are ignored
/// rather than refused (unlike <see cref="RegionHeaderLayout.Reserved"/>, which would change the layout): a capability is
/// an offer, and a later peer's offer this side does not understand is simply not taken up.
/// </remarks>
[Flags]
internal enum RegionCapabilities : uint
{
    /// <summary>Nothing promised: the producer fences before it looks at the parked count.</summary>
    None = 0,

    /// <summary>
    /// The creator's process is registered for <c>MEMBARRIER_CMD_GLOBAL_EXPEDITED</c> and, on a connection whose peer
    /// announces the same, issues that membarrier after announcing itself parked and before re-checking (on every
    /// doorbell it parks on); its producers then skip the fence before loading the parked count (see <see cref="Doorbell"/>).
    /// A side that waits with <see cref="WaitStrategy.Park"/> does not announce it (<see cref="Doorbell.CapabilitiesFor"/>).
    /// </summary>
    ParksWithMembarrier = 1 << 0,

    /// <summary>Every bit this build understands; the others are ignored.</summary>
    Known = ParksWithMembarrier,
}
