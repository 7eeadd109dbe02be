using System.Runtime.CompilerServices;

namespace PageRange.Threading;

/// <summary>
/// The message path's lock: one word holding the owner's managed thread id, taken with a compare-exchange and released
/// with a plain store; a thread that finds it held spins, then parks. Shaped like <see cref="Lock"/> (<c>Enter</c>,
/// <c>TryEnter</c>, <c>Exit</c>, <c>EnterScope</c>, <c>IsHeldByCurrentThread</c>); re-entrant, as <see cref="Monitor"/>.
/// </summary>
/// <remarks>
/// <para>
/// Why not <see cref="Monitor"/>: every <see cref="Monitor.Exit(object)"/> is a call into the runtime's native code
/// (its thin-lock release is not inlined managed code in .NET 10), and the oneway stream's writer, whose stores wait
/// for lines the receiver just read, was seen spending three quarters of its time there (a store to the thread's
/// runtime state stalled behind the copy's stores) and fell into a mode of half the rate in about half the runs
/// (benchmarks/README.md, "The message path's lock"). Here the release is one store; nothing on the fast path leaves
/// managed code.
/// </para>
/// <para>
/// Why not <see cref="Lock"/>: the first time a thread blocks on one, it creates its waiter event (56 managed bytes) on
/// that thread, at a random moment of a connection's life, which breaks the hot path's "0 bytes in steady state". A
/// thread parks here on <see cref="Monitor.Wait(object)"/> of a private object, whose wait state is native: 0 managed
/// bytes (proven by <c>ThinLockTests</c>).
/// </para>
/// <para>
/// The release is a plain store and the releaser then reads the parked count without a fence, so a parker and a
/// releaser could each miss the other's write (Dekker). The parker closes that window once, before its first wait, with
/// <see cref="Interlocked.MemoryBarrierProcessWide"/>: a full barrier on every thread of the process. After it, either
/// the release is visible to the parker (which takes the lock instead of waiting), or the releaser's load comes after
/// its barrier and sees the count, and pulses. The system call is paid only by a thread that has already spun and is
/// about to sleep.
/// </para>
/// <para>
/// Unfair, without <see cref="Monitor"/>'s protection against starving a waiter: a thread that releases and takes the
/// lock again at once wins over a parked waiter, which is pulsed at every release but finds the lock taken again. The
/// message path holds it for short sections between other work, so waiters get in; a holder that releases only to let
/// others in (the shrinker's long scan) calls <see cref="YieldToWaiters"/>.
/// </para>
/// </remarks>
internal sealed class ThinLock
{
    /// <summary>Compare-exchange attempts, with <see cref="SpinWait"/> between them, before a waiter parks.</summary>
    private const int SpinsBeforePark = 64;

    /// <summary>A parked waiter looks again at least this often even if no pulse came (a backstop, never the mechanism).</summary>
    private const int ParkBackstopMilliseconds = 100;

    /// <summary>How long <see cref="YieldToWaiters"/> gives a parked waiter to wake and take the lock.</summary>
    private static readonly long s_yieldTicks = System.Diagnostics.Stopwatch.Frequency / 1000;

    // The holder's managed thread id (never 0), or 0 when free.
    private int _owner;
    // Extra entries by the holder (re-entrancy): read and written by the holder only.
    private int _recursion;
    // Threads parked (or about to park) on _parking: written under _parking, read by releasers without it.
    private int _parked;
    private long _parks;
    private readonly object _parking = new();

    /// <summary>Whether the current thread holds the lock.</summary>
    internal bool IsHeldByCurrentThread => Volatile.Read(ref _owner) == Environment.CurrentManagedThreadId;

    /// <summary>How many times a thread parked on this lock (it spun and the lock was still held), for tests.</summary>
    internal long Parks => Interlocked.Read(ref _parks);

    /// <summary>Takes the lock, blocking while another thread holds it; re-entrant.</summary>
    internal void Enter()
    {
        int self = Environment.CurrentManagedThreadId;
        if (Interlocked.CompareExchange(ref _owner, self, 0) != 0)
        {
            EnterContended(self);
        }
    }

    /// <summary>Takes the lock if no other thread holds it.</summary>
    /// <returns>Whether the lock was taken.</returns>
    internal bool TryEnter()
    {
        int self = Environment.CurrentManagedThreadId;
        int owner = Interlocked.CompareExchange(ref _owner, self, 0);
        if (owner == 0)
        {
            return true;
        }
        if (owner == self)
        {
            _recursion++;
            return true;
        }
        return false;
    }

    /// <summary>Releases the lock once.</summary>
    /// <exception cref="SynchronizationLockException">The current thread does not hold the lock.</exception>
    internal void Exit()
    {
        if (_owner != Environment.CurrentManagedThreadId)
        {
            ThrowNotHeld();
        }
        if (_recursion != 0)
        {
            _recursion--;
            return;
        }
        // Release: everything written under the lock is visible to the next holder, whose compare-exchange reads this.
        Volatile.Write(ref _owner, 0);
        if (Volatile.Read(ref _parked) != 0)
        {
            WakeOne();
        }
    }

    /// <summary>
    /// For a holder that releases the lock only to let waiters in (a long scan): releases it, lets a parked waiter take
    /// it (at most a millisecond while the lock stays free and someone is parked), then takes it back.
    /// </summary>
    /// <remarks>
    /// An <see cref="Exit"/> followed by <see cref="Enter"/> would not do it: the lock is unfair, and the holder takes
    /// it back within nanoseconds, before a woken waiter runs. Does nothing but that pair when nobody is parked.
    /// </remarks>
    /// <exception cref="SynchronizationLockException">The current thread does not hold the lock.</exception>
    internal void YieldToWaiters()
    {
        Exit();
        if (Volatile.Read(ref _parked) != 0)
        {
            // At most a millisecond, while the lock stays free: the pulsed waiter needs a wake-up and a core.
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + s_yieldTicks;
            var spinner = default(SpinWait);
            while (Volatile.Read(ref _owner) == 0 && Volatile.Read(ref _parked) != 0 && System.Diagnostics.Stopwatch.GetTimestamp() < until)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }
        Enter();
    }

    /// <summary>Takes the lock until the returned scope is disposed (<c>using (x.EnterScope())</c>).</summary>
    internal Scope EnterScope()
    {
        Enter();
        return new Scope(this);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended(int self)
    {
        if (Volatile.Read(ref _owner) == self)
        {
            _recursion++;
            return;
        }
        var spinner = default(SpinWait);
        for (int i = 0; i < SpinsBeforePark; i++)
        {
            if (TryAcquire(self))
            {
                return;
            }
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        lock (_parking)
        {
            // Written under _parking (every writer holds it); read by releasers without it.
            Volatile.Write(ref _parked, _parked + 1);
            Interlocked.Increment(ref _parks);
            try
            {
                // See the remarks: from here on, a release we do not see sees us.
                Interlocked.MemoryBarrierProcessWide();
                while (!TryAcquire(self))
                {
                    // A releaser pulses under _parking, which Wait gives up only once we wait: no pulse is lost. The
                    // timeout is a backstop only (a thread that sleeps anyway pays nothing for it).
                    Monitor.Wait(_parking, ParkBackstopMilliseconds);
                }
            }
            catch
            {
                // An interrupted wait (Thread.Interrupt) may have taken the pulse of a release: pass it on (we hold
                // _parking again here), or another parked waiter could sleep while the lock is free.
                Monitor.Pulse(_parking);
                throw;
            }
            finally
            {
                Volatile.Write(ref _parked, _parked - 1);
            }
        }
    }

    private bool TryAcquire(int self) => Volatile.Read(ref _owner) == 0 && Interlocked.CompareExchange(ref _owner, self, 0) == 0;

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WakeOne()
    {
        lock (_parking)
        {
            Monitor.Pulse(_parking);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowNotHeld() => throw new SynchronizationLockException("The lock is not held by the current thread.");

    /// <summary>A held lock, released by <see cref="Dispose"/>.</summary>
    internal readonly ref struct Scope
    {
        private readonly ThinLock _owner;

        internal Scope(ThinLock owner) => _owner = owner;

        /// <summary>Releases the lock.</summary>
        public void Dispose() => _owner.Exit();
    }
}
