using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace PageRange.Threading;

/// <summary>
/// The message path's lock: one word holding the owner's managed thread id, taken with a compare-exchange and released
/// with a plain store; a thread that finds it held spins, then parks. Shaped like <see cref="Lock"/> (<c>Enter</c>,
/// <c>TryEnter</c>, <c>Exit</c>, <c>EnterScope</c>, <c>IsHeldByCurrentThread</c>); re-entrant, as <see cref="Monitor"/>
/// (but for <see cref="TryEnterNonRecursive"/>, the shrinker's try).
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
/// Biased to the one thread that uses it (a stream's sending thread, its receiving thread): a locked instruction costs
/// 6-8 ns here, and the one-process probe of a 64 B oneway stream spent a third of its time on three of them per message
/// (the send lock, the slot lock of the free, the handoff's exchange). After <see cref="BiasAfter"/> acquisitions in a
/// row by one thread, at 10 or more a millisecond, with nobody parked, the lock is biased to it (on x64 only, see
/// <see cref="CanBias"/>): a <see cref="BiasGrant"/> names that thread, which then enters with a plain store (the
/// grant's <c>Held</c>, which only it writes) and a load of the grant's <c>Revoked</c>, and leaves with a plain store.
/// Any other thread first takes the owner word, then revokes the grant: it sets <c>Revoked</c>, runs
/// <see cref="Interlocked.MemoryBarrierProcessWide"/> (a full barrier on every thread of the process: afterwards either
/// the bias owner's store of <c>Held</c> is visible to the revoker, which waits for it to leave, or the bias owner's
/// load comes after the barrier and sees the revocation, and it takes the owner word as anyone else), and waits until the
/// bias owner is out. A later bias goes to whichever thread earns it next: the same one takes its grant up again; another
/// one (a stream that moved to another thread) gets a new grant, and the old grant stays revoked. That is what makes the
/// move safe: the old owner may have read its grant just before the revocation and be about to store its <c>Held</c> (a
/// preempted fast path); on its own grant, which stays revoked, that store can only make it fail, never clobber the new
/// owner's flag. The rate keeps a thread that takes an idle lock now and then (a connection's housekeeping) from earning
/// a bias; each fast streak earns it, twice as long a streak for each revocation that came within 50 ms of the one
/// before (up to 16 M acquisitions): a lock that threads share pays the system call a bounded number of times and then
/// behaves as the plain lock.
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

    /// <summary>
    /// Whether locks are ever biased: where the revocation's process-wide barrier is a barrier on every core
    /// (<see cref="ProcessWideBarrier.ReachesEveryCore"/>: x64); elsewhere the lock stays the plain one.
    /// </summary>
    internal static readonly bool CanBias = ProcessWideBarrier.ReachesEveryCore;

    /// <summary>Acquisitions in a row by one thread, with nobody parked, before the lock is biased to it.</summary>
    internal const int BiasAfter = 1024;

    /// <summary>The most <see cref="BiasAfter"/> doubles to after revocations in quick succession (then a revocation
    /// costs at most one system call per 16 M acquisitions).</summary>
    private const int MaxBiasDoublings = 14;

    /// <summary>A streak earns the bias only at this rate or faster (acquisitions per millisecond), clocked from its
    /// <see cref="StreakClockedFrom"/>th acquisition, with <see cref="ClockSlackMilliseconds"/> for the clock's ticks.</summary>
    private const int MinBiasedRatePerMillisecond = 10;
    private const int StreakClockedFrom = 64;
    private const int ClockSlackMilliseconds = 16;

    /// <summary>A revocation this long after the previous one does not double <see cref="BiasAfter"/>: a connection's
    /// housekeeping takes its locks once per park timeout (100 ms by default) from its own thread, and that must not
    /// cost the stream its bias for good.</summary>
    private const long RevocationsQuietAfterMilliseconds = 50;

    // The holder's managed thread id (never 0), or 0 when free. Not set by the bias owner's own entries.
    private int _owner;
    // The current bias, live or revoked (the first one is a placeholder no thread holds): replaced only by a thread
    // holding the owner word.
    private BiasGrant _bias = new();
    // The thread that took the owner word last and how many times in a row it did (written under the owner word).
    private int _streakThread;
    private int _streak;
    private long _streakClockedAtTicks;
    private int _revocations;
    // Revocations each within RevocationsQuietAfterMilliseconds of the one before (written under the owner word).
    private int _recentRevocations;
    private long _lastRevocationTicks;
    // Extra entries by the holder (re-entrancy): read and written by the holder only.
    private int _recursion;
    // Threads parked (or about to park) on _parking: written under _parking, read by releasers without it.
    private int _parked;
    private long _parks;
    private readonly object _parking = new();

    // The current thread's managed id, read once per thread. Environment.CurrentManagedThreadId is a call into the
    // runtime's native thread-static helper (not inlined in .NET 10 on Linux), and Enter and Exit each needed it: in
    // the one-process probe (benchmarks/results/session-2234/probe) that helper and the __tls_get_addr it calls were 6-7%
    // of a 64 B oneway stream's time. A thread static of our own is read by the JIT's inline TLS access, half the cost.
    [ThreadStatic]
    private static int t_threadId;

    /// <summary>The current thread's managed thread id (never 0).</summary>
    internal static int CurrentThreadId
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int id = t_threadId;
            return id != 0 ? id : InitializeThreadId();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int InitializeThreadId() => t_threadId = Environment.CurrentManagedThreadId;

    /// <summary>Whether the current thread holds the lock.</summary>
    internal bool IsHeldByCurrentThread
    {
        get
        {
            int self = CurrentThreadId;
            return Volatile.Read(ref _owner) == self || (Volatile.Read(ref _bias) is var grant && grant.Owner == self && Volatile.Read(ref grant.Held) != 0);
        }
    }

    /// <summary>How many times a thread parked on this lock (it spun and the lock was still held), for tests.</summary>
    internal long Parks => Interlocked.Read(ref _parks);

    /// <summary>Whether the lock is biased to the current thread now (it enters without a locked instruction), for tests.</summary>
    internal bool IsBiasedToCurrentThread =>
        Volatile.Read(ref _bias) is var grant && grant.Owner == CurrentThreadId && Volatile.Read(ref grant.Revoked) == 0;

    /// <summary>How many times another thread revoked the bias (each a process-wide barrier), for tests.</summary>
    internal int Revocations => Volatile.Read(ref _revocations);

    /// <summary>Takes the lock, blocking while another thread holds it; re-entrant.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Enter()
    {
        int self = CurrentThreadId;
        if (_bias is var grant && grant.Owner == self && TryEnterBiased(grant))
        {
            return;
        }
        EnterByOwnerWord(self);
    }

    /// <summary>Takes the owner word (spinning, then parking, while another thread holds it), re-entrantly.</summary>
    private void EnterByOwnerWord(int self)
    {
        if (Interlocked.CompareExchange(ref _owner, self, 0) == 0)
        {
            OwnerWordTaken(self, waitForBiasOwner: true);
        }
        else
        {
            EnterContended(self);
        }
    }

    /// <summary>Takes the lock if no other thread holds it.</summary>
    /// <returns>Whether the lock was taken.</returns>
    internal bool TryEnter()
    {
        int self = CurrentThreadId;
        if (_bias is var grant && grant.Owner == self && TryEnterBiased(grant))
        {
            return true;
        }
        int owner = Interlocked.CompareExchange(ref _owner, self, 0);
        if (owner == 0)
        {
            // The bias owner may be inside: then the bias is revoked all the same, and the caller tries again later.
            return OwnerWordTaken(self, waitForBiasOwner: false);
        }
        if (owner == self)
        {
            _recursion++;
            return true;
        }
        return false;
    }

    /// <summary>
    /// Takes the lock if no thread holds it, the current one included: the seed's <c>try_lock</c>, which fails on a mutex
    /// its own thread holds. For a caller that takes locks against their order (the shrinker) and must not walk into a
    /// section its own thread is in the middle of, whose state that section expects to change only by its own hand.
    /// </summary>
    /// <returns>Whether the lock was taken (once: one <see cref="Exit"/> releases it).</returns>
    internal bool TryEnterNonRecursive()
    {
        int self = CurrentThreadId;
        if (_bias is var grant && grant.Owner == self)
        {
            if (grant.Held != 0)
            {
                // Inside by the bias already (only this thread writes Held).
                return false;
            }
            if (TryEnterBiased(grant))
            {
                return true;
            }
        }
        // 0: free. Anyone else's id, ours included: held, so no recursion.
        return Interlocked.CompareExchange(ref _owner, self, 0) == 0 && OwnerWordTaken(self, waitForBiasOwner: false);
    }

    /// <summary>The bias owner's entry: a plain store and a load, no locked instruction.</summary>
    /// <returns>Whether it entered; <see langword="false"/> when the bias is revoked (take the owner word instead).</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool TryEnterBiased(BiasGrant grant)
    {
        if (grant.Held != 0)
        {
            // Only this thread writes Held: it is inside already.
            _recursion++;
            return true;
        }
        // The store, then the load: a revoker sets Revoked, then runs a process-wide barrier, then reads Held.
        // Whatever this core reorders, after that barrier either our store is visible to the revoker (it waits for our
        // exit) or our load comes after its store (we see the revocation). The processor may run the load first; the
        // JIT does not: it keeps volatile accesses in program order among themselves (the memory model only promises
        // release and acquire, which alone would let it; RyuJIT's x64 code here is the store, then the compare, as the
        // review of this change read in its disassembly).
        Volatile.Write(ref grant.Held, 1);
        if (Volatile.Read(ref grant.Revoked) == 0)
        {
            return true;
        }
        // Revoked: this store touches only our own grant, which no other thread ever holds (a move makes a new one).
        Volatile.Write(ref grant.Held, 0);
        return false;
    }

    /// <summary>Releases the lock once.</summary>
    /// <exception cref="SynchronizationLockException">The current thread does not hold the lock.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Exit()
    {
        int self = CurrentThreadId;
        if (_bias is var grant && grant.Owner == self && grant.Held != 0)
        {
            // Inside by the bias (the owner word is not ours: the bias owner never holds both at once). The grant is
            // still the current one: it is replaced only after its owner is seen out.
            ExitBiased(grant);
            return;
        }
        if (_owner != self)
        {
            ThrowNotHeld();
        }
        if (_recursion != 0)
        {
            _recursion--;
            return;
        }
        ReleaseOwnerWord();
    }

    /// <summary>Releases a hold the bias owner took by its bias (<see cref="TryEnterBiased"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ExitBiased(BiasGrant grant)
    {
        Debug.Assert(grant.Owner == CurrentThreadId && grant.Held != 0, "Only the bias owner, inside by its bias, leaves by it.");
        if (_recursion != 0)
        {
            _recursion--;
            return;
        }
        // Release: what we wrote inside is visible to a revoker, which reads this before it goes in.
        Volatile.Write(ref grant.Held, 0);
    }

    private void ReleaseOwnerWord()
    {
        // Release: everything written under the lock is visible to the next holder, whose compare-exchange reads this.
        Volatile.Write(ref _owner, 0);
        if (Volatile.Read(ref _parked) != 0)
        {
            WakeOne();
        }
    }

    /// <summary>
    /// Runs once the current thread took the owner word (not re-entrantly): ends the current bias, if any (revoking it and
    /// waiting out its owner if that is another thread), and counts the acquisition towards a bias to this thread.
    /// </summary>
    /// <returns>Whether the caller holds the lock; <see langword="false"/> only without <paramref name="waitForBiasOwner"/>,
    /// when the bias owner was inside (the owner word is then released again).</returns>
    private bool OwnerWordTaken(int self, bool waitForBiasOwner)
    {
        if (!CanBias)
        {
            // No grant is ever live: nothing to revoke, no streak to count.
            return true;
        }
        // Our own grant can be here only revoked (a live one lets us in by the bias) and we are not inside by it.
        BiasGrant grant = _bias;
        if (grant.Owner != self)
        {
            if (Volatile.Read(ref grant.Revoked) == 0)
            {
                RevokeBias(grant);
            }
            if (Volatile.Read(ref grant.Held) != 0)
            {
                if (!waitForBiasOwner)
                {
                    ReleaseOwnerWord();
                    return false;
                }
                WaitForBiasOwnerToLeave(grant);
            }
        }
        // Another owner's Held may read 1 for a moment here: its stale fast path on this revoked grant, about to fail.
        Debug.Assert(grant.Revoked != 0 && (grant.Owner != self || grant.Held == 0), "The owner word is held only while no bias is live.");
        if (_streakThread != self)
        {
            _streakThread = self;
            _streak = 0;
        }
        if (++_streak == StreakClockedFrom)
        {
            // Clocked from here, not from the first: short streaks (threads taking turns) never read the clock.
            _streakClockedAtTicks = Environment.TickCount64;
        }
        else if (_streak >= BiasAfter << _recentRevocations && Volatile.Read(ref _parked) == 0)
        {
            if (Environment.TickCount64 - _streakClockedAtTicks <= (_streak - StreakClockedFrom) / MinBiasedRatePerMillisecond + ClockSlackMilliseconds)
            {
                BiasToCurrentThread(self);
            }
            else
            {
                // A slow streak (a connection's housekeeping thread, once per park timeout): the bias must go to the thread
                // that uses the lock hard, not to one that happened to use it alone (its revocation would cost the system call).
                _streak = 0;
            }
        }
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RevokeBias(BiasGrant grant)
    {
        Volatile.Write(ref grant.Revoked, 1);
        Volatile.Write(ref _revocations, _revocations + 1);
        long now = Environment.TickCount64;
        _recentRevocations = now - _lastRevocationTicks < RevocationsQuietAfterMilliseconds
            ? Math.Min(_recentRevocations + 1, MaxBiasDoublings)
            : 0;
        _lastRevocationTicks = now;
        // See the remarks: after this, the bias owner is either seen inside or sees the revocation.
        Interlocked.MemoryBarrierProcessWide();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForBiasOwnerToLeave(BiasGrant grant)
    {
        // Its sections are short; if it was preempted inside, SpinWait yields and then sleeps rather than burn the core.
        try
        {
            var spinner = default(SpinWait);
            while (Volatile.Read(ref grant.Held) != 0)
            {
                spinner.SpinOnce();
            }
        }
        catch
        {
            // Its sleeps are interruptible (Thread.Interrupt): the caller leaves Enter by the exception, holding nothing,
            // so the owner word we took must go back (and a parked waiter be told), or the lock stays taken for good.
            ReleaseOwnerWord();
            throw;
        }
    }

    /// <summary>Turns the current hold of the owner word into a hold by the bias, and releases the owner word.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void BiasToCurrentThread(int self)
    {
        _streak = 0;
        BiasGrant grant = _bias;
        if (grant.Owner == self || grant.Owner == 0)
        {
            // Our own revoked grant (only our own fast path could read it as ours, and we are here), or the placeholder
            // no thread ever held: taken up again, so a thread that earns its bias back allocates nothing.
            grant.Owner = self;
            Volatile.Write(ref grant.Held, 1);
            Volatile.Write(ref grant.Revoked, 0);
        }
        else
        {
            // The bias moves to another thread: a new grant (32 bytes, once per move), never the old owner's, whose fast
            // path may have read it and be about to store its Held (see the remarks).
            Volatile.Write(ref _bias, new BiasGrant { Owner = self, Held = 1, Revoked = 0 });
        }
        // Inside by the bias from here on; the owner word goes last, so whoever takes it next sees the grant.
        ReleaseOwnerWord();
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Scope EnterScope() => EnterScope(ThreadToken.Current);

    /// <summary>
    /// <see cref="EnterScope()"/> for a caller that read its thread's id once (<see cref="ThreadToken.Current"/>) for the
    /// several lock passes of one operation: each read is a call on Linux (see <see cref="ThreadToken"/>).
    /// </summary>
    /// <param name="thread">The current thread's token; another thread's would let two threads in.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal Scope EnterScope(ThreadToken thread)
    {
        int self = thread.Id;
        Debug.Assert(self == CurrentThreadId, "A thread token used on another thread than the one that read it.");
        if (self == 0)
        {
            // default(ThreadToken): id 0 is the free owner word's value, so it would "take" the lock without holding it.
            ThrowDefaultToken();
        }
        if (_bias is var grant && grant.Owner == self && TryEnterBiased(grant))
        {
            // The scope remembers how it entered: its exit then needs neither the thread's id nor the owner word.
            return new Scope(this, grant);
        }
        EnterByOwnerWord(self);
        return new Scope(this, grant: null);
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDefaultToken() =>
        throw new InvalidOperationException("A default ThreadToken; only ThreadToken.Current makes one.");

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
                OwnerWordTaken(self, waitForBiasOwner: true);
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
        // Outside _parking: waiting out a bias owner must not hold up the releasers' pulses.
        OwnerWordTaken(self, waitForBiasOwner: true);
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

    /// <summary>
    /// The lock's bias to one thread (see the remarks): revoked for good once revoked, unless that same thread earns the
    /// bias back (then it is taken up again); a bias to another thread is a new grant.
    /// </summary>
    internal sealed class BiasGrant
    {
        // The thread the lock is biased to (0: the placeholder no thread held): written under the owner word, before the
        // grant is live.
        public int Owner;

        // 1 while the owner is inside by this grant (and, for a moment, while it looks at Revoked): written by the owner only.
        public int Held;

        // 1 while revoked (so is the placeholder): set by a thread holding the owner word; cleared only when the grant's
        // own thread earns it back.
        public int Revoked = 1;
    }

    /// <summary>A held lock, released by <see cref="Dispose"/>.</summary>
    internal readonly ref struct Scope
    {
        private readonly ThinLock _owner;
        private readonly BiasGrant? _grant;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        internal Scope(ThinLock owner, BiasGrant? grant)
        {
            _owner = owner;
            _grant = grant;
        }

        /// <summary>Releases the lock.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Dispose()
        {
            // Entered by this grant, so this thread is its owner, the only writer of its Held: a plain load tells whether
            // it still holds by it. It may not: YieldToWaiters inside the scope can give the bias up to a revoker and take
            // the lock back by the owner word (or by a newer grant), which Exit then releases.
            if (_grant is { } grant && grant.Held != 0)
            {
                _owner.ExitBiased(grant);
            }
            else
            {
                _owner.Exit();
            }
        }
    }
}
