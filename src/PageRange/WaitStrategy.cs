namespace PageRange;

/// <summary>How a thread waits for the peer (a transaction to arrive, or a buffer to be freed).</summary>
/// <remarks>
/// Spinning answers in well under a microsecond but burns a core; parking costs a futex round trip (a few
/// microseconds) but leaves the core to others. On a machine with few cores, prefer <see cref="SpinThenPark"/>
/// with a short spin, or <see cref="Park"/>.
/// </remarks>
public enum WaitStrategy
{
    /// <summary>Spin (yielding now and then) until the condition holds or the timeout passes; never park.</summary>
    BusySpin,

    /// <summary>Spin for a bounded time, then park on the futex. The default.</summary>
    /// <remarks>
    /// The spin is learned from recent waits: about twice as long as the peer usually took, at most the configured spin
    /// duration; a waiter whose peer keeps taking longer than that parks at once, and spins the full duration now and
    /// then to notice when the peer speeds up again.
    /// </remarks>
    SpinThenPark,

    /// <summary>Park on the futex at once.</summary>
    Park,
}
