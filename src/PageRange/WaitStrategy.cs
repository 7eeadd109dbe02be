namespace PageRange;

/// <summary>How a thread waits for the peer (a transaction to arrive, or a buffer to be freed).</summary>
/// <remarks>
/// Spinning answers in well under a microsecond but burns a core; parking costs a futex round trip (a few
/// microseconds) but leaves the core to others. On a machine with few cores, prefer <see cref="SpinThenPark"/>
/// with a short spin, or <see cref="Park"/>.
/// </remarks>
public enum WaitStrategy
{
    /// <summary>Spin (pause instructions, no system call) until the condition holds or the timeout passes; never park.</summary>
    BusySpin,

    /// <summary>Spin for a bounded time, then park on the futex. The default.</summary>
    /// <remarks>
    /// The spin is learned from recent waits: long enough to catch the answers that come within the configured spin
    /// duration, slower ones of the usual spread included, and never longer than that duration, which is taken as the
    /// price of a park; a waiter whose peer mostly takes longer parks at once, and spins the full duration now and then
    /// to notice when the peer speeds up again. The spin uses pause instructions, not <c>sched_yield</c>, unless the
    /// process has more spinning threads than the machine has cores.
    /// </remarks>
    SpinThenPark,

    /// <summary>Park on the futex at once.</summary>
    Park,
}
