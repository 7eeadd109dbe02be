using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// Wakes a consumer that waits for a ring: it spins a bounded time, then announces it is parked, re-checks, and waits
/// on a non-private futex (with a timeout); the producer makes the <c>FUTEX_WAKE</c> system call only when a consumer
/// said it is parked, so the fast path makes none.
/// </summary>
/// <remarks>
/// <para>
/// Two shared words, each on its own line: the sequence (the futex word, bumped by the producer) and the parked count
/// (incremented and decremented by consumers). The protocol is Dekker's: the consumer increments parked (a full fence),
/// loads the sequence, then re-checks the ring; the producer stores the tail, fences, then loads parked. With both
/// fences at least one side sees the other's store: either the consumer sees the new tail and does not sleep, or the
/// producer sees parked != 0, bumps the sequence and wakes; a consumer that had not reached <c>futex_wait</c> yet then
/// finds the sequence changed and returns at once (it loaded the sequence before re-checking the ring).
/// </para>
/// <para>
/// Where both sides can (<see cref="ParkBarrier"/>), the producer's fence moves to the consumer: the consumer issues a
/// global expedited membarrier after its increment, which orders every registered producer thread's stores before its
/// loads at that moment, and the producer rings after its publish (a record, a packed message, a batch of frees) with a
/// plain load (no fence per message, which on x86 waited for the message's stores to reach lines the consumer was
/// reading). Should the barrier ever fail after the kernel offered it, the consumer parks all the same, for at most a
/// millisecond (counted in <see cref="ParkBarrierFailures"/>): that bounds a wake the producer's missing fence could lose.
/// </para>
/// <para>
/// A consumer that parks as a rule (spin-then-park, park) would pay the barrier, a system call and an interrupt of
/// every core, in every park, which costs a round trip whose peer makes it park at each call far more than the fence it saves. So
/// such a consumer decides park by park (<see cref="AdaptiveBarrier"/>): while it takes many records between two parks
/// (a stream) it issues the barrier, and announces it in a mode word beside the parked count; otherwise (calls, a
/// trickle) it does not, and the producer fences again. The producer
/// loads the mode word after its publish and fences unless it reads "on". Why no wake is lost across a switch, where
/// S is the producer's publish, M its load of the mode, L its load of parked, and the consumer's state is private:
/// <list type="bullet">
/// <item>Off: the consumer sets its state to "turning off" (every park in that state still issues the barrier), stores
/// the mode word 0, issues one barrier, and only then sets "off". A producer that read "on" (M before the barrier's
/// point in its program order, so S, before M, too) published before the barrier returned, and a consumer that parks
/// without the barrier afterwards sees S in its re-check. A producer that read 0 fenced: the symmetric protocol.</item>
/// <item>On: the consumer sets its state to "on" and then stores the mode word 1 (release). A parker that read "off"
/// after its increment of parked (a full fence) did so before that state store; a producer that read the mode 1
/// (acquire) then loads parked after that, and sees the increment: it wakes the parker.</item>
/// </list>
/// One thread switches at a time (a try-lock), so a switch never completes another's. A consumer's decision reads only
/// its private state, never the shared word: a peer that writes the word changes only whether its own publishes fence,
/// which risks only wakes of the peer's own messages (as a missing ring would).
/// </para>
/// <para>
/// The peer can write anything into both words. That can only cost wake-ups (spurious ones, or missed ones that the
/// futex timeout backstops); neither word is ever used as an index or a size, so neither needs validation. A peer that
/// flips the sequence word (or calls <c>FUTEX_WAKE</c> on it) without publishing anything would turn a parked thread
/// into a spinning one: after <see cref="SpuriousWakesBeforeBackOff"/> wakes in a row that brought nothing, a waiter
/// backs off to a real timed park on a private word the peer cannot reach (1 ms, doubling up to the park timeout)
/// before it parks on the shared word again, and returns to normal once a park times out undisturbed.
/// Thread safety: any number of consumers may wait and any number of producers ring concurrently.
/// </para>
/// </remarks>
internal sealed unsafe class Doorbell
{
    /// <summary>Wakes in a row that brought nothing before a waiter backs off to a timed park the peer cannot cut short.</summary>
    internal const int SpuriousWakesBeforeBackOff = 8;

    // A word of our own, in pinned memory, that nobody ever changes: a futex wait on it is a plain timed sleep that only
    // a cancellation (WakeBackOff) ends early. One for every doorbell: a cancellation wakes other backed-off waiters too,
    // and they re-check and sleep again, which is harmless.
    private static readonly int[] s_backOffWord = GC.AllocateArray<int>(1, pinned: true);

    private static readonly long s_firstBackOffTicks = ToStopwatchTicks(TimeSpan.FromMilliseconds(1));

    private readonly SharedRegion _region;
    private readonly int* _sequence;
    private readonly int* _parked;
    // Producer side: ring without the fence (the consumers issue a ParkBarrier before they park). Consumer side: issue
    // it. Each is set only when the other side's half is known to be there (see ParkBarrier).
    // Not readonly: a ring's producer learns after construction that its consumer parks with the barrier
    // (RingWithoutFenceFromNow), before its first publish.
    private bool _ringWithoutFence;
    private readonly bool _parkWithBarrier;
    // The consumer's announcement of its adaptive barrier (AdaptiveBarrier), beside the parked count; null when neither
    // side of this doorbell uses it. Producer side: read after each publish (_ringWithoutFenceWhileAnnounced). Consumer
    // side: written only, on a switch.
    private readonly int* _barrierMode;
    private readonly bool _ringWithoutFenceWhileAnnounced;
    private readonly bool _adaptiveBarrier;
    // Consumer side: Off, On or TurningOff (private: see the remarks); the try-lock of a switch.
    private int _barrierState;
    private int _switchingBarrier;
    // Consumer side: the ring position the choice counts progress by (records taken), and its value at the last park.
    private readonly Func<ulong>? _progress;
    private ulong _progressAtLastPark;
    private long _barrierSwitches;
    private int _barrierOnAfter = AdaptiveBarrier.OnAfter;
    private int _barrierOffBelow = AdaptiveBarrier.OffBelow;
    private int _barrierOffAfterParks = AdaptiveBarrier.OffAfterParks;
    // Parks in a row that followed less than _barrierOffBelow (under the switch's try-lock).
    private int _quietParks;
    private long _parks;
    private long _parkBarriers;
    private long _parkBarrierFailures;
    // Barriers still to refuse as the kernel would (RefuseParkBarriersForTest): 0 outside the tests of that path.
    private int _parkBarriersToRefuse;

    // Learned from this side's waits on this doorbell; local, never shared with the peer (see SpinBudget).
    private SpinBudget _spinBudget;
    private int _quickWaits;
    private long _answeredWhilePausing;
    private long _spunPastPauses;

    /// <summary>Creates a doorbell over two 4-byte aligned words of <paramref name="region"/>.</summary>
    /// <remarks>Safety: both words lie in the region's mapping, which stays mapped while a reference on it is held.</remarks>
    private Doorbell(
        SharedRegion region, int* sequence, int* parked, bool ringWithoutFence, bool parkWithBarrier, int* barrierMode,
        bool ringWithoutFenceWhileAnnounced, bool adaptiveBarrier, Func<ulong>? progress)
    {
        _progress = progress;
        _region = region;
        _sequence = sequence;
        _parked = parked;
        _ringWithoutFence = ringWithoutFence;
        _parkWithBarrier = parkWithBarrier;
        _barrierMode = barrierMode;
        _ringWithoutFenceWhileAnnounced = ringWithoutFenceWhileAnnounced;
        _adaptiveBarrier = adaptiveBarrier;
        if (adaptiveBarrier)
        {
            // Starts on: a consumer that never parks costs nothing with it, and the producer's first messages go without
            // the fence. SAFETY: _barrierMode points at a word of the mapping (Over checked it); the owner keeps it alive.
            _barrierState = AdaptiveBarrier.On;
            Volatile.Write(ref *_barrierMode, 1);
        }
    }

    /// <summary>Creates a doorbell over two words of <paramref name="region"/>.</summary>
    /// <param name="region">The region; the caller keeps it mapped (holds a reference) while the doorbell is used.</param>
    /// <param name="sequenceOffset">Byte offset of the sequence (futex) word, 4-byte aligned.</param>
    /// <param name="parkedOffset">Byte offset of the parked count, 4-byte aligned.</param>
    /// <param name="ringWithoutFence">Producer side: <see cref="RingAfterPublish"/> makes no fence, because every
    /// consumer issues a <see cref="ParkBarrier"/> before it parks and this process is registered for it.</param>
    /// <param name="parkWithBarrier">Consumer side: issue a <see cref="ParkBarrier"/> before every park, so producers
    /// may ring without a fence.</param>
    /// <param name="barrierModeOffset">Byte offset of the consumer's barrier mode word (see the remarks), 4-byte aligned;
    /// -1 when neither of the next two is set.</param>
    /// <param name="ringWithoutFenceWhileAnnounced">Producer side: <see cref="RingAfterPublish"/> makes no fence while the
    /// mode word says the consumer issues the barrier (this process is registered for it).</param>
    /// <param name="adaptiveBarrier">Consumer side: decide park by park whether to issue the barrier, and announce it in
    /// the mode word (<see cref="AdaptiveBarrier"/>).</param>
    /// <param name="progress">Consumer side, with <paramref name="adaptiveBarrier"/>: how many records the consumers
    /// have taken so far (read once per park; a racy read is fine, it only feeds the choice).</param>
    /// <exception cref="ArgumentException">A word lies outside the region or is misaligned, or a mode word is needed and missing.</exception>
    internal static Doorbell Over(
        SharedRegion region, long sequenceOffset, long parkedOffset, bool ringWithoutFence = false, bool parkWithBarrier = false,
        long barrierModeOffset = -1, bool ringWithoutFenceWhileAnnounced = false, bool adaptiveBarrier = false, Func<ulong>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(region);
        if (sequenceOffset % 4 != 0 || parkedOffset % 4 != 0)
        {
            throw new ArgumentException("A futex word must be 4-byte aligned.", nameof(sequenceOffset));
        }
        bool needsMode = ringWithoutFenceWhileAnnounced || adaptiveBarrier;
        if (needsMode != (barrierModeOffset >= 0) || (needsMode && barrierModeOffset % 4 != 0))
        {
            throw new ArgumentException("A barrier mode word (4-byte aligned) is given exactly when a side follows or announces it.", nameof(barrierModeOffset));
        }
        if (adaptiveBarrier != (progress is not null))
        {
            // Without it the choice would count nothing: once off, the barrier would never turn on again.
            throw new ArgumentException("A consumer's progress is given exactly when it chooses its barrier.", nameof(progress));
        }
        // SAFETY: each GetSpan checks that its bytes lie inside the mapping; the caller keeps it alive.
        fixed (byte* sequence = region.GetSpan(sequenceOffset, sizeof(int)))
        fixed (byte* parked = region.GetSpan(parkedOffset, sizeof(int)))
        fixed (byte* mode = needsMode ? region.GetSpan(barrierModeOffset, sizeof(int)) : default)
        {
            return new Doorbell(
                region, (int*)sequence, (int*)parked, ringWithoutFence, parkWithBarrier, (int*)mode, ringWithoutFenceWhileAnnounced, adaptiveBarrier, progress);
        }
    }

    /// <summary>Producer side, after the release store of the tail: wakes parked consumers, if any.</summary>
    /// <returns>Whether a wake was issued (a consumer had announced it was parked).</returns>
    internal bool Ring()
    {
        // Full fence: orders our tail store before the load of the parked count (Dekker, see the remarks); pairs
        // with the Interlocked.Increment of the parked count in Wait.
        Interlocked.MemoryBarrier();
        return WakeIfParked();
    }

    /// <summary>
    /// <see cref="Ring"/> after a publish (a record's tail, a packed message's <c>Committed</c>, a batch of frees' tail):
    /// without the fence when the consumers issue a <see cref="ParkBarrier"/> before they park (it orders both sides'
    /// stores before their loads instead).
    /// </summary>
    /// <returns>Whether a wake was issued.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool RingAfterPublish()
    {
        // The mode word is loaded after the publish's store, in program order (both accesses volatile, through pointers
        // the JIT cannot tell apart), and before the parked count (acquire): the remarks' order. SAFETY: _barrierMode
        // points at a word of the mapping the owner keeps alive (set whenever _ringWithoutFenceWhileAnnounced is).
        if (!_ringWithoutFence && !(_ringWithoutFenceWhileAnnounced && Volatile.Read(ref *_barrierMode) != 0))
        {
            Interlocked.MemoryBarrier();
        }
        return WakeIfParked();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool WakeIfParked()
    {
        // SAFETY: _parked points at a word of the mapping the owner keeps alive.
        if (Volatile.Read(ref *_parked) == 0)
        {
            return false;
        }
        WakeAll();
        return true;
    }

    /// <summary>
    /// <see cref="WakeAll"/> for a waker that may race the owner's dispose (a death notice, say): takes a reference so the
    /// words stay mapped for the call, and does nothing once the region is closed (nobody can be parked on it then).
    /// </summary>
    internal void WakeAllIfOpen()
    {
        if (_region.TryAddRef())
        {
            try
            {
                WakeAll();
            }
            finally
            {
                _region.ReleaseRef();
            }
        }
    }

    /// <summary>Futex waits so far, on the shared word or backing off: what a spurious-wake flood would inflate.</summary>
    internal long Parks => Interlocked.Read(ref _parks);

    /// <summary>Barriers issued before parking (consumer side, with <c>parkWithBarrier</c>).</summary>
    internal long ParkBarriers => Interlocked.Read(ref _parkBarriers);

    /// <summary>Barriers the kernel refused (the wait parked without it; see the remarks).</summary>
    internal long ParkBarrierFailures => Interlocked.Read(ref _parkBarrierFailures);

    /// <summary>
    /// Makes the next <paramref name="count"/> park barriers of this doorbell fail as a refusing kernel's would (a
    /// <see cref="SystemCallException"/> from the call), for the tests of the path a machine that offers the barrier
    /// never takes.
    /// </summary>
    internal void RefuseParkBarriersForTest(int count) => Volatile.Write(ref _parkBarriersToRefuse, count);

    /// <summary>Whether <see cref="RingAfterPublish"/> makes no fence (producer side).</summary>
    internal bool RingsWithoutFence => _ringWithoutFence;

    /// <summary>
    /// Producer side: <see cref="RingAfterPublish"/> makes no fence from now on, as with <c>ringWithoutFence</c> at
    /// construction; for a producer that learns only later that its consumers issue the barrier. Call it before the
    /// first publish: a publish that still reads the old setting only fences needlessly.
    /// </summary>
    internal void RingWithoutFenceFromNow() => _ringWithoutFence = true;

    /// <summary>Whether parks issue a <see cref="ParkBarrier"/> first (consumer side), always.</summary>
    internal bool ParksWithBarrier => _parkWithBarrier;

    /// <summary>Whether this consumer decides park by park whether to issue the barrier (<see cref="AdaptiveBarrier"/>).</summary>
    internal bool ParksWithAdaptiveBarrier => _adaptiveBarrier;

    /// <summary>Whether <see cref="RingAfterPublish"/> skips its fence while the consumer announces the barrier (producer side).</summary>
    internal bool RingsWithoutFenceWhileAnnounced => _ringWithoutFenceWhileAnnounced;

    /// <summary>Consumer side: whether the next park issues the barrier (on, or still turning off).</summary>
    internal bool AdaptiveBarrierOn => _adaptiveBarrier && Volatile.Read(ref _barrierState) != AdaptiveBarrier.Off;

    /// <summary>Consumer side: switches of the adaptive barrier so far (on or off).</summary>
    internal long BarrierSwitches => Interlocked.Read(ref _barrierSwitches);

    /// <summary>
    /// Consumer side: the records between two parks at or above which the barrier turns on, and below which it turns off (<see cref="AdaptiveBarrier"/>'s defaults otherwise), for tests that make it switch at will.
    /// </summary>
    internal void SetBarrierThresholdsForTest(int onAfter, int offBelow, int offAfterParks = 1)
    {
        _barrierOnAfter = onAfter;
        _barrierOffBelow = offBelow;
        _barrierOffAfterParks = offAfterParks;
    }

    /// <summary>Bumps the sequence and wakes every parked waiter, whatever the parked count says.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void WakeAll()
    {
        // SAFETY: _sequence points at a 4-byte aligned word of the mapping the owner keeps alive.
        Interlocked.Increment(ref *_sequence);
        Interop.FutexWake(_sequence, int.MaxValue);
    }

    /// <summary>One pause between two polls of a busy spin (this doorbell's, a follower's).</summary>
    /// <remarks>
    /// The pause instruction itself, inlined: about 20 ns on the EPYC VM. <see cref="Thread.SpinWait(int)"/> with one
    /// unit (the runtime scales a unit to at least ~37 ns) is a call into the runtime each time and measured 46-51 ns
    /// there, so each side noticed a message up to that late (16 units made it ~615 ns: round trip 2.01-2.10 -> 1.60-1.74
    /// µs with one). Elsewhere (no pause instruction known here) one unit, as before.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void PausePoll()
    {
        if (X86Base.IsSupported)
        {
            X86Base.Pause();
        }
        else if (ArmBase.IsSupported)
        {
            ArmBase.Yield();
        }
        else
        {
            Thread.SpinWait(1);
        }
    }

    /// <summary>Waits until <paramref name="condition"/> holds, the deadline passes, or the token is cancelled.</summary>
    /// <param name="condition">What to wait for.</param>
    /// <param name="strategy">Spin, spin then park, or park.</param>
    /// <param name="spinDuration">How long <see cref="WaitStrategy.SpinThenPark"/> spins, unless its recent waits say the peer
    /// is far slower than that and it parks at once (<see cref="PageRange.Transport.SpinBudget"/>).</param>
    /// <param name="parkTimeout">The longest single futex wait (the backstop against a lost wake or a dead peer).</param>
    /// <param name="deadline">A <see cref="Stopwatch.GetTimestamp"/> value; <see cref="long.MaxValue"/> for none.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>Whether the condition holds (<see langword="false"/>: the deadline passed).</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <remarks>
    /// Allocates only when it parks with a cancellable token (the token registration). Holds a reference on the region
    /// from before its first check until it returns, so the words stay mapped even if the owner is disposed meanwhile:
    /// the condition reads shared words (a ring's tail), and an owner disposed on another thread between a check and
    /// an unreferenced read would unmap them under it (a fault that ends the process, not an exception).
    /// </remarks>
    /// <exception cref="ObjectDisposedException">The region was closed before the wait began.</exception>
    internal bool Wait<TCondition>(
        ref TCondition condition, WaitStrategy strategy, TimeSpan spinDuration, TimeSpan parkTimeout, long deadline,
        CancellationToken cancellationToken)
        where TCondition : struct, IWaitCondition
    {
        _region.AddRef();
        try
        {
            return WaitReferenced(ref condition, strategy, spinDuration, parkTimeout, deadline, cancellationToken);
        }
        finally
        {
            _region.ReleaseRef();
        }
    }

    /// <summary>
    /// <see cref="Wait{TCondition}"/> for a caller that holds a reference on the region for as long as this runs (a
    /// reader that keeps one across its whole wait loop): no reference round trip of its own.
    /// </summary>
    /// <inheritdoc cref="Wait{TCondition}"/>
    internal bool WaitReferenced<TCondition>(
        ref TCondition condition, WaitStrategy strategy, TimeSpan spinDuration, TimeSpan parkTimeout, long deadline,
        CancellationToken cancellationToken)
        where TCondition : struct, IWaitCondition =>
        // The first look is a poll only where polls follow it: a "no" in front of a park would cost the park's fence (a
        // system call with the park barrier) to find what an exact look finds at once.
        (strategy == WaitStrategy.BusySpin ? condition.PollReady() : condition.IsReady)
        || SpinThenPark(ref condition, strategy, spinDuration, parkTimeout, deadline, cancellationToken);

    private bool SpinThenPark<TCondition>(
        ref TCondition condition, WaitStrategy strategy, TimeSpan spinDuration, TimeSpan parkTimeout, long deadline,
        CancellationToken cancellationToken)
        where TCondition : struct, IWaitCondition
    {
        if (strategy == WaitStrategy.SpinThenPark)
        {
            return LearnedSpinThenPark(ref condition, ToStopwatchTicks(spinDuration), parkTimeout, deadline, cancellationToken);
        }
        if (strategy == WaitStrategy.BusySpin)
        {
            long spinEnd = deadline;
            int polls = 0;
            while (!condition.PollReady())
            {
                cancellationToken.ThrowIfCancellationRequested();
                // The clock every 32 polls (about 1 µs), not every poll: a read of the kvm clock (29-40 ns) costs more
                // than the pause between polls, so reading it each time would more than double how late a message is
                // noticed. The deadline is a park timeout or a call's timeout away: a microsecond late is nothing to it.
                if ((++polls & 31) == 0 && Stopwatch.GetTimestamp() >= spinEnd)
                {
                    return condition.IsReady;
                }
                // Pause instructions only: SpinWait.SpinOnce would call sched_yield every few dozen rounds and hand
                // the core to any runnable thread, which is what a busy-spinning user chose to avoid. See PausePoll.
                PausePoll();
            }
            return true;
        }

        return Park(ref condition, parkTimeout, deadline, cancellationToken);
    }

    /// <summary>
    /// Spins for the cap, or parks at once while the peer has been far slower than that (<see cref="SpinBudget"/>); tells
    /// the budget how long the whole wait took.
    /// </summary>
    private bool LearnedSpinThenPark<TCondition>(
        ref TCondition condition, long capTicks, TimeSpan parkTimeout, long deadline, CancellationToken cancellationToken)
        where TCondition : struct, IWaitCondition
    {
        long budget = _spinBudget.Next(capTicks);
        long start = Stopwatch.GetTimestamp();
        try
        {
            if (budget > 0)
            {
                long spinEnd = deadline - start <= budget ? deadline : start + budget;
                // First as busy-spin polls (a pause between looks, the clock every 32), while recent waits ended within
                // PauseOnlySpin: a peer that answers while traffic flows is noticed within a pause, not within SpinOnce's
                // growing spins and its clock read per round (round trip 1.23-1.47 -> 1.01-1.09 µs, level with busy-spin's,
                // on the Ice Lake VM). Not while waits take longer (a thread-pool hop, a peer sharing our core): a spin
                // that never yields would only keep the core from whoever the answer waits for. Past PauseOnlySpin,
                // SpinOnce yields now and then as before.
                long pauseEnd = _quickWaits >= QuickWaitsBeforePausing ? Math.Min(spinEnd, start + s_pauseOnlySpinTicks) : start;
                int polls = 0;
                while (pauseEnd > start)
                {
                    if (condition.PollReady())
                    {
                        _answeredWhilePausing++;
                        return true;
                    }
                    cancellationToken.ThrowIfCancellationRequested();
                    if ((++polls & 31) == 0 && Stopwatch.GetTimestamp() >= pauseEnd)
                    {
                        break;
                    }
                    PausePoll();
                }
                if (pauseEnd > start)
                {
                    _spunPastPauses++;
                }
                SpinWait spinner = default;
                while (true)
                {
                    if (condition.IsReady)
                    {
                        return true;
                    }
                    cancellationToken.ThrowIfCancellationRequested();
                    if (Stopwatch.GetTimestamp() >= spinEnd)
                    {
                        break;
                    }
                    // -1: yield now and then but never Sleep(1), which would cost a millisecond.
                    spinner.SpinOnce(sleep1Threshold: -1);
                }
            }
            return Park(ref condition, parkTimeout, deadline, cancellationToken);
        }
        finally
        {
            // Every end counts, a park's too: its length includes the peer's wake of us, which is how a waiter parking at
            // once sees the peer speed up again. A wait cut short by its deadline or a cancellation is a lower bound.
            long waited = Stopwatch.GetTimestamp() - start;
            _spinBudget.Record(waited, capTicks);
            // Plain, like the budget: several waiters may race on it, and a lost update only skews a heuristic.
            _quickWaits = waited <= s_pauseOnlySpinTicks ? Math.Min(_quickWaits + 1, MaxQuickWaits) : Math.Max(_quickWaits - 1, 0);
        }
    }

    /// <summary>
    /// How long a <see cref="WaitStrategy.SpinThenPark"/> spin polls as busy-spin does before it spins with
    /// <see cref="SpinWait.SpinOnce(int)"/> (which yields now and then): a round trip's wait while traffic flows, with room;
    /// only while recent waits ended within it (<see cref="QuickWaitsBeforePausing"/>).
    /// </summary>
    /// <remarks>
    /// Not longer: an earlier pause-only 5 µs (2026-12-02, a slower library, a loaded machine) kept the core from a peer
    /// or a harness thread that shared it (p99 26-38 against 22-25 µs). Within 2 µs a peer on our core loses about what
    /// SpinOnce's first rounds took anyway.
    /// </remarks>
    internal static readonly TimeSpan PauseOnlySpin = TimeSpan.FromMicroseconds(2);

    private static readonly long s_pauseOnlySpinTicks = ToStopwatchTicks(PauseOnlySpin);

    /// <summary>Recent spin-then-park waits that ended within <see cref="PauseOnlySpin"/> (net of those that did not) from which a wait polls as busy-spin first.</summary>
    internal const int QuickWaitsBeforePausing = 2;

    private const int MaxQuickWaits = 4;

    /// <summary>Recent waits that ended within <see cref="PauseOnlySpin"/>, net of those that did not (0 to 4), for tests.</summary>
    internal int QuickWaits => _quickWaits;

    /// <summary>Spin-then-park waits answered while polling as busy-spin, for tests (plain counts: a hint under races).</summary>
    internal long AnsweredWhilePausing => _answeredWhilePausing;

    /// <summary>Spin-then-park waits that polled past <see cref="PauseOnlySpin"/> into the yielding spin, for tests.</summary>
    internal long SpunPastPauses => _spunPastPauses;

    /// <summary>The learned spin budget, for tests and the state dump.</summary>
    internal SpinBudget SpinBudget => _spinBudget;

    private bool Park<TCondition>(ref TCondition condition, TimeSpan parkTimeout, long deadline, CancellationToken cancellationToken)
        where TCondition : struct, IWaitCondition
    {
        // A cancelled token wakes us through the futex instead of waiting for the park timeout.
        using CancellationTokenRegistration registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((Doorbell)state!).WakeForCancellation(), this)
            : default;
        if (_adaptiveBarrier)
        {
            ChooseBarrier();
        }
        long parkTicks = ToStopwatchTicks(parkTimeout);
        int fruitlessWakes = 0;
        long backOffTicks = s_firstBackOffTicks;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long remaining = deadline == long.MaxValue ? long.MaxValue : deadline - Stopwatch.GetTimestamp();
            if (remaining <= 0)
            {
                return condition.IsReady;
            }

            if (fruitlessWakes >= SpuriousWakesBeforeBackOff)
            {
                // Someone keeps waking us without publishing: sleep where they cannot reach, then look again. Not counted
                // as parked meanwhile, so an honest producer makes no futex call for us (we see its tail when we wake).
                BackOff(Math.Min(Math.Min(backOffTicks, parkTicks), remaining));
                backOffTicks = Math.Min(backOffTicks * 2, parkTicks);
                if (condition.IsReady)
                {
                    return true;
                }
                cancellationToken.ThrowIfCancellationRequested();
                remaining = deadline == long.MaxValue ? long.MaxValue : deadline - Stopwatch.GetTimestamp();
                if (remaining <= 0)
                {
                    return condition.IsReady;
                }
            }

            // SAFETY (this block): _parked and _sequence point at words of the mapping, which the reference Wait holds
            // keeps alive for the duration of the wait.
            // Full fence: pairs with the fence in Ring (Dekker): the producer either sees us parked or we see its tail.
            Interlocked.Increment(ref *_parked);
            bool woken;
            try
            {
                long thisParkTicks = parkTicks;
                // The producer's half of the fence, for producers that ring without one (see ParkBarrier): after this, a
                // publish is either visible to the re-check below or its producer sees us parked. Refused (not expected),
                // a wake may be lost: this park is then a short one.
                // The adaptive state is read after the increment (a full fence): see the remarks' "on" case.
                if ((_parkWithBarrier || (_adaptiveBarrier && Volatile.Read(ref _barrierState) != AdaptiveBarrier.Off)) && !IssueParkBarrier())
                {
                    thisParkTicks = Math.Min(parkTicks, s_parkAfterBarrierFailureTicks);
                }
                // Load the sequence before re-checking the condition: a wake issued after the check bumps it, and
                // futex_wait then returns at once instead of sleeping through it.
                int sequence = Volatile.Read(ref *_sequence);
                if (condition.IsReady)
                {
                    return true;
                }
                Interlocked.Increment(ref _parks);
                woken = Interop.FutexWait(_sequence, sequence, FromStopwatchTicks(Math.Min(thisParkTicks, remaining)));
            }
            finally
            {
                Interlocked.Decrement(ref *_parked);
            }
            if (condition.IsReady)
            {
                return true;
            }
            if (woken)
            {
                fruitlessWakes++;
            }
            else
            {
                // A park that timed out undisturbed: nobody is flipping the word (any more).
                fruitlessWakes = 0;
                backOffTicks = s_firstBackOffTicks;
            }
        }
    }

    /// <summary>
    /// Before a park of an adaptive consumer: turns the barrier on after a stretch of records taken, off after a few
    /// parks in a row that followed too few, and completes a switch off whose barrier was refused (see the remarks).
    /// </summary>
    private void ChooseBarrier()
    {
        // Records taken since the last park (plain: several waiters may race on the mark, and a lost update only skews
        // the choice): a stream's reader takes hundreds of packs between parks; calls take one record each, or none
        // (a small call comes through the direct lines).
        ulong progress = _progress!.Invoke();
        long done = (long)Math.Min(progress - _progressAtLastPark, int.MaxValue);
        _progressAtLastPark = progress;
        if (Interlocked.CompareExchange(ref _switchingBarrier, 1, 0) != 0)
        {
            // Another waiter is switching: this park follows whatever state it leaves (read after the increment).
            return;
        }
        try
        {
            _quietParks = done < _barrierOffBelow ? _quietParks + 1 : 0;
            switch (_barrierState)
            {
                case AdaptiveBarrier.Off when done >= _barrierOnAfter:
                    // The state first, then the word (release): see the remarks' "on" case.
                    Volatile.Write(ref _barrierState, AdaptiveBarrier.On);
                    // SAFETY: _barrierMode points at a word of the mapping the wait's reference keeps alive.
                    Volatile.Write(ref *_barrierMode, 1);
                    Interlocked.Increment(ref _barrierSwitches);
                    break;
                case AdaptiveBarrier.On when _quietParks >= _barrierOffAfterParks:
                    Volatile.Write(ref _barrierState, AdaptiveBarrier.TurningOff);
                    // SAFETY: as above.
                    Volatile.Write(ref *_barrierMode, 0);
                    Interlocked.Increment(ref _barrierSwitches);
                    CompleteTurningOff();
                    break;
                case AdaptiveBarrier.TurningOff:
                    CompleteTurningOff();
                    break;
            }
        }
        finally
        {
            Volatile.Write(ref _switchingBarrier, 0);
        }
    }

    /// <summary>The barrier after the mode word's 0: every producer that read "on" has published by its end. Refused, the state stays "turning off" (each park still issues it) and the next park tries again.</summary>
    private void CompleteTurningOff()
    {
        if (IssueParkBarrier())
        {
            Volatile.Write(ref _barrierState, AdaptiveBarrier.Off);
        }
    }

    /// <summary>How long a park lasts at most after the park barrier was refused (a wake may have been lost).</summary>
    private static readonly long s_parkAfterBarrierFailureTicks = ToStopwatchTicks(TimeSpan.FromMilliseconds(1));

    /// <returns>Whether the barrier was issued.</returns>
    private bool IssueParkBarrier()
    {
        try
        {
            if (Volatile.Read(ref _parkBarriersToRefuse) > 0 && Interlocked.Decrement(ref _parkBarriersToRefuse) >= 0)
            {
                throw new SystemCallException("membarrier", 1, "membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) refused for a test (EPERM)");
            }
            ParkBarrier.Issue();
            Interlocked.Increment(ref _parkBarriers);
            return true;
        }
        catch (SystemCallException)
        {
            // The kernel offered the command when the process started (ParkBarrier.CanIssue tried it) and refuses it now:
            // not expected. Throwing would end a receive, or the room watcher's thread and with it the process; parking
            // without it risks only this wait, which the caller keeps short.
            Interlocked.Increment(ref _parkBarrierFailures);
            return false;
        }
    }

    /// <summary>A timed sleep on the private word, which only <see cref="WakeForCancellation"/> cuts short.</summary>
    private void BackOff(long ticks)
    {
        Interlocked.Increment(ref _parks);
        // SAFETY: s_backOffWord is a pinned array (never moved, never freed: it is static), so the address stays valid
        // and 4-byte aligned for the wait.
        fixed (int* word = s_backOffWord)
        {
            Interop.FutexWait(word, 0, FromStopwatchTicks(ticks));
        }
    }

    /// <summary>A cancelled wait's registration: wakes waiters parked on the shared word and those backing off.</summary>
    private void WakeForCancellation()
    {
        WakeAll();
        // SAFETY: as in BackOff, the pinned static array's address is valid and aligned for as long as the process runs.
        fixed (int* word = s_backOffWord)
        {
            Interop.FutexWake(word, int.MaxValue);
        }
    }

    /// <summary>A deadline <paramref name="timeout"/> from now, in <see cref="Stopwatch"/> ticks; infinite -> <see cref="long.MaxValue"/>.</summary>
    internal static long DeadlineAfter(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            return long.MaxValue;
        }
        long ticks = ToStopwatchTicks(timeout);
        long now = Stopwatch.GetTimestamp();
        return ticks >= long.MaxValue - now ? long.MaxValue : now + ticks;
    }

    private static long ToStopwatchTicks(TimeSpan span)
    {
        if (span <= TimeSpan.Zero)
        {
            return 0;
        }
        double ticks = span.TotalSeconds * Stopwatch.Frequency;
        return ticks >= long.MaxValue ? long.MaxValue : (long)ticks;
    }

    private static TimeSpan FromStopwatchTicks(long ticks) =>
        TimeSpan.FromTicks((long)(ticks * ((double)TimeSpan.TicksPerSecond / Stopwatch.Frequency)));
}
