namespace PageRange.Threading;

/// <summary>
/// A mutual-exclusion lock on <see cref="Monitor"/>, shaped like <see cref="Lock"/> (<c>Enter</c>, <c>TryEnter</c>,
/// <c>Exit</c>, <c>EnterScope</c>, <c>IsHeldByCurrentThread</c>, and the <c>lock</c> statement), so a field on the message
/// path changes type and nothing else.
/// </summary>
/// <remarks>
/// Why not <see cref="Lock"/>: the first time a thread has to block on a <see cref="Lock"/> (its holder preempted, say),
/// the lock creates its waiter event, a managed <see cref="AutoResetEvent"/> and its handle (56 bytes), on the blocking
/// thread. That happens once per lock, at a random moment of a connection's life, on whichever thread was unlucky, and
/// breaks the hot path's "0 bytes in steady state" (a 5,000-call test once measured 280 bytes: five locks). A contended
/// <see cref="Monitor"/> keeps its wait state in the runtime's native sync block: 0 managed bytes (CoreCLR, .NET 10,
/// proven by <c>MonitorLockTests</c>). Uncontended, both are one compare-exchange on entry and one store on exit.
/// </remarks>
internal sealed class MonitorLock
{
    /// <summary>Whether the current thread holds the lock.</summary>
    internal bool IsHeldByCurrentThread => Monitor.IsEntered(this);

    /// <summary>Takes the lock, blocking while another thread holds it; re-entrant.</summary>
    internal void Enter() => Monitor.Enter(this);

    /// <summary>Takes the lock if no other thread holds it.</summary>
    /// <returns>Whether the lock was taken.</returns>
    internal bool TryEnter() => Monitor.TryEnter(this);

    /// <summary>Releases the lock once.</summary>
    /// <exception cref="SynchronizationLockException">The current thread does not hold the lock.</exception>
    internal void Exit() => Monitor.Exit(this);

    /// <summary>Takes the lock until the returned scope is disposed (<c>using (x.EnterScope())</c>).</summary>
    internal Scope EnterScope()
    {
        Monitor.Enter(this);
        return new Scope(this);
    }

    /// <summary>A held lock, released by <see cref="Dispose"/>.</summary>
    internal readonly ref struct Scope
    {
        private readonly MonitorLock _owner;

        internal Scope(MonitorLock owner) => _owner = owner;

        /// <summary>Releases the lock.</summary>
        public void Dispose() => Monitor.Exit(_owner);
    }
}
