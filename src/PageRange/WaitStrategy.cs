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
    /// <remarks>
    /// A receiver that busy-spins also spares its peer's writer a full fence per small oneway message: its rare parks (waits that do
    /// not follow the strategy) issue a process-wide memory barrier instead, where the kernel offers one
    /// (<c>membarrier</c>, Linux 4.16+). For a stream of small oneway messages that is about twice the rate.
    /// A receiver that keeps up with such a stream trails it by a pack: while it waits, it looks for the writer's next
    /// pack rather than at each message appended to the current one, so the writer fills packs no one reads meanwhile.
    /// A receive call still takes every message already sent; only a waiting receiver sees the last messages of a stream
    /// that stops inside a pack later, by at most a few microseconds.
    /// </remarks>
    BusySpin,

    /// <summary>Spin for a bounded time, then park on the futex. The default.</summary>
    /// <remarks>
    /// A waiter spins for the configured spin duration (the spin ends as soon as the answer comes); one whose recent waits
    /// took far longer than that (more than eight times, spin and park included) parks at once, and spins again as soon
    /// as its waits, parks included, become short.
    /// </remarks>
    SpinThenPark,

    /// <summary>Park on the futex at once.</summary>
    Park,
}
