// Locks: _receiveLock (transaction ring consumer) and _freeLock (free ring producer) are never held together,
// except by Dispose, which takes them in that order. A connection adopts _freeLock (FreeLock) as its own slot lock, so
// its release path, which holds that lock anyway, publishes frees through FreeUnderLock without a second round trip;
// nobody may take _receiveLock while holding it.
//
// Batches: TryReceiveBatch takes several records under one receive lock and stores the shared head once, before it
// returns, so every record it hands out is covered by the head the writer loads after a free (binder's delivery rule:
// a free is honoured only for a record below that head); a free can therefore never reach the writer ahead of its
// record's head. FreeUnderLock may hold a small free's tail back (deferPublish): the record is written, the tail is
// stored once per batch by a later free or by PublishFreesUnderLock, which the owner calls before its receiver waits.

using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Diagnostics;
using PageRange.Memory;
using PageRange.Threading;

namespace PageRange.Transport;

/// <summary>
/// The receiving side of one direction: creates the region the peer writes into, reads transactions in place and
/// hands buffers back through the free ring.
/// </summary>
/// <remarks>
/// <para>
/// The region's header is written here once, before the peer sees the region; afterwards this side never reads its
/// configuration back (the layout is kept privately). The data area is mapped read-only, as binder maps a receiver's
/// view. Every transaction record is copied to a local once and validated (offset and length inside the data area,
/// no overflow, known flags, status and chain where they belong, reserved words zero) before use; anything invalid is a <see cref="ProtocolViolationException"/>, and the bad
/// record is not consumed, so every later receive fails the same way until the connection is closed.
/// </para>
/// <para>
/// Thread safety: every member may be called from any thread. Receives are serialised among themselves, frees among
/// themselves. A payload span is valid until its transaction is freed or the channel is disposed.
/// </para>
/// </remarks>
internal sealed unsafe class InboundChannel : IDisposable
{
    private readonly SharedRegion _region;
    private readonly RegionLayout _layout;
    private readonly ChannelOptions _options;
    private readonly byte* _data;
    private readonly RingConsumer<TransactionRecordLayout> _txRing;
    private readonly RingProducer<FreeRecordLayout> _freeRing;
    private readonly Doorbell _txDoorbell;
    private readonly Doorbell _freeDoorbell;
    private readonly RegionMemoryManager _memory;
    private readonly int* _freeParked;
    private readonly ThinLock _receiveLock = new();
    private readonly ThinLock _freeLock = new();
    private int _disposed;
    // The connection's reader role (PageRangeConnection): 1 while a thread holds it. Here because it also keeps the ring
    // mapped: Dispose leaves the unmap to the role's release while a thread holds it (see TryTakeReaderRole).
    private int _readerRole;
    // Set by whichever of Dispose and the role's release gives back the role's reference on the region (only one does).
    private int _readerRoleReferenceReleased;

    /// <summary>Set by <see cref="WakeReader"/>: waits return at once from then on.</summary>
    private int _released;
    /// <summary>Set by <see cref="NudgeReader"/>: the current (or next) wait returns once, then it is cleared.</summary>
    private int _nudged;
    private long _highWaterMark;
    // The payloads of inline records (see InlineLayout) of the batch being taken, by position. Made with the channel,
    // not at the first inline record: an allocation that failed in the middle of a batch would lose the records taken.
    private readonly byte[] _inlineStaging = new byte[ReceiveBatch * InlineLayout.MaxStagedPayload];
    private long _emptyReceivePasses;
    // Our direct reply lines (DirectReplyLayout), which the peer writes; the id of the call whose reply may come there
    // (0: none), set and cleared only by the call's owner (see ExpectDirectReply); and the id of the last reply the reader
    // took from them, written only by the reader: an expectation ends when the two are equal. The reader never writes the
    // owner's word, so a peer that answers a call twice cannot make it wipe the next call's expectation (it did when the
    // reader cleared the word with a plain store; a compare-exchange there cost the take 6-8 ns).
    private readonly TransactionRecordLayout* _directReply;
    private ulong _expectedDirectReply;
    private ulong _takenDirectReply;
    private long _directRepliesReceived;
    private long _directRepliesTakenAlone;
    // Our direct call lines (DirectCallLayout), which the peer writes; and the sequence of the last call taken from them
    // (written under the receive lock, read by waiters' looks without it).
    private readonly TransactionRecordLayout* _directCall;
    private ulong _directCallsTaken;

    // The current pack (see PackLayout), under the receive lock: its offset (-1: none; also read by waiters as a hint),
    // capacity, table index, the Committed word as last validated, and the bytes of entries consumed (from the header).
    private long _packOffset = -1;
    private int _packCapacity;
    private int _packIndex;
    private uint _packSeen;
    private int _packConsumed;
    // Entries taken from the current pack: at most PackLayout.MaxEntries.
    private int _packEntries;
    // The current pack's FirstId (PackLayout), copied once when the pack is taken: a short entry's id follows from it.
    private ulong _packFirstId;
    private ulong _packIdStep;
    // Messages handed out from the current pack in this batch, not yet added to its Taken and _packedTaken.
    private int _packPending;
    private int _packSearch;
    private long _packsReceived;
    // Loads of a pack's Committed word (TakePackEntries): under the receive lock.
    private long _packLooks;
    // Seals whose NextPack hint was prefetched, and seals with a hint that was not (outside the data area): under the
    // receive lock.
    private long _nextPackPrefetches;
    private long _nextPackHintsRefused;
    // The receiver's paced looks while a pack was current, the reads of its Committed word among them, and the looks left
    // out since the last read that found nothing (ReceiveMaybeReadyPaced; set back to 0 by a pass that took everything, to
    // "read next time" by a wait that ended ready).
    private long _packWaitPolls;
    private long _packWaitLooks;
    private int _packPollsSkipped;
    // Whether a message was taken from a pack since a pass last took everything committed (TakePackEntries): under the
    // receive lock.
    private bool _packedSinceDrain;
    // The receiver's repeated looks since a pass last took everything committed, and whether they are paced: set by the
    // last read that found more, from how soon it came (ReceiveMaybeReadyPaced).
    private int _packPollsSinceTake;
    private bool _packPaced;
    // Whether the receiver trails the writer's stream by a pack (ChannelOptions.TrailsStreams): set when the receiver
    // caught up with the writer at most StreamTrailMaxCatchUps times in a pack the stream filled (and at most once per
    // StreamTrailMinMessagesPerCatchUp of its messages), cleared when a pack is
    // sealed otherwise or the writer pauses (StreamTrailLooks). The polls of the current pack while trailing (a waiter's,
    // as hints), and the times a pass took everything the current pack's word covered before its seal (the receive lock).
    private readonly bool _trailsStreams;
    private bool _packTrail;
    private int _packTrailLooks;
    private int _packCatchUps;
    private long _packsTrailed;
    private long _trailsGivenUp;
    private long _inlineReceived;
    private ulong _delivered;
    // Every pack still owed a free (InUse): the current one, and finished ones with messages not yet freed. Each pack
    // counts the messages taken from it (Taken: the receive lock, while it is current) and those freed (Freed: the free
    // lock); Finished (the free lock, set once Taken is final) decides, under the free lock, who writes the pack's free:
    // the finish if every message was freed by then, else the free of the last message. No locked instruction per
    // message: a free is under the free lock anyway, and the receive lock's side is a plain count per batch.
    private readonly PackState[] _packs = new PackState[MaxPackedLive + 2];
    // Messages taken from packs (the receive lock) and freed (the free lock): their difference, the messages live, is
    // at most MaxPackedLive (the connection has that many extra slots). Two counters with one writer each instead of one
    // counter both sides change with a locked instruction.
    private long _packedTaken;
    private long _packedFreed;

    private InboundChannel(SharedRegion region, RegionLayout layout, ChannelOptions options)
    {
        _region = region;
        _layout = layout;
        _options = options;
        _trailsStreams = options.TrailsStreams;
        _txRing = RingConsumer<TransactionRecordLayout>.Over(
            region, RegionHeaderLayout.TxTailOffset, RegionHeaderLayout.TxHeadOffset, layout.TxRingOffset, layout.TxRingCapacity, "transaction");
        _freeRing = RingProducer<FreeRecordLayout>.Over(
            region, RegionHeaderLayout.FreeTailOffset, RegionHeaderLayout.FreeHeadOffset, layout.FreeRingOffset, layout.FreeRingCapacity, "free");
        // As the header says (Create): our readers pay for the writer's fence when they park (and our writer, waiting for
        // room in the peer's region, for the peer's free fence: OutboundChannel).
        _txDoorbell = Doorbell.Over(
            region, RegionHeaderLayout.TxDoorbellSequenceOffset, RegionHeaderLayout.TxDoorbellParkedOffset, parkWithBarrier: options.ParksWithBarrier,
            barrierModeOffset: options.ParksWithAdaptiveBarrier ? RegionHeaderLayout.TxBarrierModeOffset : -1,
            adaptiveBarrier: options.ParksWithAdaptiveBarrier, progress: options.ParksWithAdaptiveBarrier ? () => _txRing.Head : null);
        _freeDoorbell = Doorbell.Over(region, RegionHeaderLayout.FreeDoorbellSequenceOffset, RegionHeaderLayout.FreeDoorbellParkedOffset);
        // SAFETY: the data area lies inside the mapping (the layout was computed for its size), which the creator's
        // reference keeps alive now and ours (taken at the end of this constructor) until Dispose releases it after every
        // operation has left.
        _data = region.BasePointer + layout.DataOffset;
        // SAFETY: as the data area's: both direct line sets (a record line and its payload lines each) lie inside the
        // mapping, before the transaction ring (the layout's).
        _directReply = (TransactionRecordLayout*)(region.BasePointer + DirectReplyLayout.Offset);
        _directCall = (TransactionRecordLayout*)(region.BasePointer + DirectCallLayout.Offset);
        _memory = new RegionMemoryManager(_data, checked((int)layout.DataSize), this);
        // SAFETY: GetSpan checks that the word lies inside the mapping, kept alive by the references named above;
        // the word is the writer's (it counts its parked threads), read only as a hint, never as an index or size.
        fixed (byte* parked = region.GetSpan(RegionHeaderLayout.FreeDoorbellParkedOffset, sizeof(int)))
        {
            _freeParked = (int*)parked;
        }
        // Last, so that a constructor that throws leaves no reference behind (the creator gives back only its own): the
        // channel's own (Dispose gives it back) and the reader role's (TryTakeReaderRole).
        region.AddRef();
        region.AddRef();
    }

    /// <summary>Frees written to the ring before their tail is published, at most (see <see cref="FreeUnderLock(in TransactionRecord, bool)"/>).</summary>
    internal const int FreeBatch = 16;

    /// <summary>The largest buffer whose free may wait for a batch: a slab slot or a small buffer (the writer's lazy drain bound).</summary>
    internal const int FreeBatchMaxLength = 2048;

    /// <summary>The most records <see cref="TryReceiveBatch(Span{TransactionRecord})"/> takes in one pass that a caller should ask for.</summary>
    internal const int ReceiveBatch = 32;

    /// <summary>
    /// While a pack is current, the receiver has taken all it holds, and the writer streams (the last time the receiver
    /// found more, it came within <see cref="PackStreamPolls"/> looks), the receiver's repeated looks for more (its loop
    /// between waits, a wait's polls: <see cref="ReceiveMaybeReadyPaced"/>) read the pack's Committed word only once in
    /// this many; a look that finds more is made every time until a pass takes it. The look before a park, a pass's own
    /// reads, and every look while the writer sends now and then are made each time.
    /// </summary>
    /// <remarks>
    /// The writer stores that word for every message it appends, so each read that comes between two of its stores takes
    /// the line from the writer's core and makes its next store wait for the line to come back, with every store behind
    /// it. A receiver that keeps up with a stream (<c>ReceiveBatch</c>) looks between its takes: reading the word at every
    /// look it read it 0.43 times per message (3.4 M looks from waits and 1.4 M from takes for 10.9 M messages). 64 B
    /// with far vCPUs on the EPYC guest, 5 alternated runs: 12.2-13.2 M messages/s (median 12.5) before, 15.4-16.9 M
    /// (median 16.2) with one read in 4 looks, the floor 19-27 M (4 more pairs of the final form: 11.2-15.3 M against
    /// 10.6-12.1 M, better in 3, level in 1); every 8 was no better than 4 in an earlier trial
    /// (benchmarks/README.md, "The oneway stream's receiver looks less often", session 2026-12-05 08:29). Within a
    /// stream it delays a message appended to the open pack while the receiver waits by at most three polls (a pause
    /// each, 20-40 ns), and a call or reply behind the pack by as much; a writer that sends now and then (more than
    /// <see cref="PackStreamPolls"/> looks apart) has its next message seen as before.
    /// </remarks>
    internal const int PackPollInterval = 4;

    /// <summary>
    /// The most looks after a take within which more must come for the receiver to pace its looks
    /// (<see cref="PackPollInterval"/>): 64 polls, 1.3-2.6 µs at a pause each. A writer that sends less often than that
    /// is not a stream, and its next message is seen at the first poll after it lands.
    /// </summary>
    internal const int PackStreamPolls = 64;

    /// <summary>
    /// The most times a busy-spinning receiver may have caught up with the writer (taken everything a pack's Committed
    /// word covered before the seal) in a pack that a stream filled, for it to trail the stream
    /// (<see cref="ChannelOptions.TrailsStreams"/>): 8, where a receiver that keeps up with a 64 B stream catches up 3-5
    /// times per pack of 56 (12-17 messages per look), and one that takes messages sent now and then (an echo) once per
    /// message.
    /// </summary>
    internal const int StreamTrailMaxCatchUps = 8;

    /// <summary>
    /// The fewest messages per catch-up, on average over the pack, for a receiver to trail the stream: 2. A pack of 1 KiB
    /// messages holds three, so an echo of them (a catch-up or more per message) catches up fewer than
    /// <see cref="StreamTrailMaxCatchUps"/> times per pack too; trailed, each of its messages waited for the trail to be
    /// given up (a 1 KiB echo's p99 8-10 µs instead of 2-3). Two, not more, so that a receiver keeping up with a stream
    /// of 256 B messages (15 to a pack) still trails it with up to 7 catch-ups.
    /// </summary>
    internal const int StreamTrailMinMessagesPerCatchUp = 2;

    /// <summary>
    /// How many polls a trailing receiver's waits look for the open pack's seal before they look at its Committed word
    /// again and it stops trailing: 256 polls, 5-10 µs at a pause each, more than a stream takes to fill a pack (56
    /// messages of 64 B at 20 M messages/s: 2.8 µs). A waiting receiver sees the last messages of a stream that stops
    /// inside a pack that much later; a receive pass takes whatever is committed at any time.
    /// </summary>
    internal const int StreamTrailLooks = 256;

    /// <summary>
    /// The most messages taken from packs and not yet freed: a pack's messages are not buffers of their own, so the
    /// writer's live-buffer limit does not bound them; this does. The owner keeps this many slots beyond
    /// <see cref="MaxLiveBuffers"/> (see <see cref="MaxLiveTransactions"/>). An honest writer keeps at most
    /// <see cref="PackLayout.MaxLivePacks"/> packs of <see cref="PackLayout.MaxEntries"/> live, so it never makes a
    /// receiver stop inside a pack (and hold back the calls behind it); only a writer that breaks that promise meets
    /// this cap, and only its own later records wait.
    /// </summary>
    internal const int MaxPackedLive = PackLayout.MaxLivePacks * PackLayout.MaxEntries;

    /// <summary>The region; its <see cref="SharedRegion.Handle"/> is what the peer receives.</summary>
    internal SharedRegion Region => _region;

    /// <summary>Where the header, rings and data area lie.</summary>
    internal RegionLayout Layout => _layout;

    /// <summary>The options the region was created with.</summary>
    internal ChannelOptions Options => _options;

    /// <summary>
    /// Ring slots taken off the transaction ring so far: a record each (a pack's record counts once), and the payload
    /// slots after an inline record (see <see cref="InlineLayout"/>); and replies taken from the direct reply lines (see
    /// <see cref="DirectReplyLayout"/>): what the connection's housekeeping compares to learn whether a reader read since
    /// its last pass (a caller whose replies all come directly never moves the ring's head).
    /// </summary>
    internal ulong Received => _txRing.Head + (ulong)Volatile.Read(ref _directRepliesReceived) + Volatile.Read(ref _directCallsTaken);

    /// <summary>Calls taken from the direct call lines so far (see <see cref="DirectCallLayout"/>).</summary>
    internal long DirectCallsReceived => (long)Volatile.Read(ref _directCallsTaken);

    /// <summary>Transactions handed out so far: records of their own and messages taken from packs.</summary>
    internal ulong Delivered => Volatile.Read(ref _delivered);

    /// <summary>Replies taken from the direct reply lines so far (see <see cref="DirectReplyLayout"/>).</summary>
    internal long DirectRepliesReceived => Volatile.Read(ref _directRepliesReceived);

    /// <summary>Of <see cref="DirectRepliesReceived"/>, those taken alone by their caller (<see cref="TryTakeDirectReplyAlone"/>), not by a batch.</summary>
    internal long DirectRepliesTakenAlone => Volatile.Read(ref _directRepliesTakenAlone);

    /// <summary>The id of the call whose direct reply the reader looks for; 0 when none (none set, or its reply taken).</summary>
    internal ulong ExpectedDirectReply
    {
        get
        {
            ulong expected = Volatile.Read(ref _expectedDirectReply);
            return expected == Volatile.Read(ref _takenDirectReply) ? 0 : expected;
        }
    }

    /// <summary>
    /// Makes the reader look for call <paramref name="callId"/>'s reply in the direct reply lines (and its waits return
    /// when it is there), before the call is sent. The caller makes sure no other id is expected
    /// (<see cref="ExpectedDirectReply"/> is 0) and that no other thread sets one meanwhile (the connection's slot lock).
    /// </summary>
    internal void ExpectDirectReply(ulong callId)
    {
        Debug.Assert(callId != 0 && ExpectedDirectReply == 0, "One direct reply expected at a time.");
        Volatile.Write(ref _expectedDirectReply, callId);
    }

    /// <summary>
    /// Stops looking for call <paramref name="callId"/>'s direct reply, if it is still the one expected: its reply came
    /// another way (the ring, the control socket), or it was never sent. A compare-exchange: the reader may have taken the
    /// reply meanwhile and another call be expected already.
    /// </summary>
    internal void StopExpectingDirectReply(ulong callId) => Interlocked.CompareExchange(ref _expectedDirectReply, 0, callId);

    /// <summary>
    /// <see cref="StopExpectingDirectReply"/> for the call's owner holding the connection's slot lock, under which
    /// expectations begin (<see cref="ExpectDirectReply"/>): a load and a store, no locked instruction. No other call can
    /// begin an expectation between the two (the lock), and the reader never writes this word.
    /// </summary>
    internal void StopExpectingDirectReplyUnsynchronized(ulong callId)
    {
        if (Volatile.Read(ref _expectedDirectReply) == callId)
        {
            Volatile.Write(ref _expectedDirectReply, 0);
        }
    }

    /// <summary>Packs taken off the ring so far.</summary>
    internal long PacksReceived => Interlocked.Read(ref _packsReceived);

    /// <summary>Sealed packs whose NextPack hint the receiver prefetched (<see cref="PackLayout.NextPackHintOffset"/>).</summary>
    internal long NextPackPrefetches => Volatile.Read(ref _nextPackPrefetches);

    /// <summary>Sealed packs with a NextPack hint that named nothing inside the data area, so nothing was prefetched.</summary>
    internal long NextPackHintsRefused => Volatile.Read(ref _nextPackHintsRefused);

    /// <summary>The receiver's paced looks while a pack was current (<see cref="ReceiveMaybeReadyPaced"/>; a hint under races).</summary>
    internal long PackWaitPolls => Volatile.Read(ref _packWaitPolls);

    /// <summary>The reads of the current pack's Committed word among <see cref="PackWaitPolls"/>: one in <see cref="PackPollInterval"/> while nothing comes.</summary>
    internal long PackWaitLooks => Volatile.Read(ref _packWaitLooks);

    /// <summary>Packs taken whole after their seal while the receiver trailed the stream (<see cref="ChannelOptions.TrailsStreams"/>).</summary>
    internal long PacksTrailed => Volatile.Read(ref _packsTrailed);

    /// <summary>Trails given up because the writer paused inside a pack (<see cref="StreamTrailLooks"/>).</summary>
    internal long TrailsGivenUp => Volatile.Read(ref _trailsGivenUp);

    /// <summary>Whether the receiver now trails the stream by a pack (a hint, for tests).</summary>
    internal bool TrailingStream => Volatile.Read(ref _packTrail);

    /// <summary>How many transactions arrived with their payload inline (see <see cref="InlineLayout"/>).</summary>
    internal long InlineReceived => Volatile.Read(ref _inlineReceived);

    /// <summary>Messages taken from packs and not yet freed (at most <see cref="MaxPackedLive"/>).</summary>
    internal int PackedLive => PackedLiveAtMost;

    /// <summary>
    /// Messages taken from packs and not yet freed, or more (never fewer): the freed count is read first, so a free
    /// racing with the read only makes the answer larger, which keeps the cap (<see cref="MaxPackedLive"/>) safe.
    /// </summary>
    private int PackedLiveAtMost
    {
        get
        {
            long freed = Volatile.Read(ref _packedFreed);
            return (int)(Volatile.Read(ref _packedTaken) - freed);
        }
    }

    /// <summary>Frees published so far (not counting those held back for a batch).</summary>
    internal ulong Freed => _freeRing.PublishedTail;

    /// <summary>Creates the region, writes its header, backs the header pages and maps the data area read-only.</summary>
    /// <param name="name">The memfd's name, shown in <c>/proc/&lt;pid&gt;/fd</c>.</param>
    /// <param name="options">Size, ring capacities and waits.</param>
    /// <exception cref="ArgumentException">An option is out of range.</exception>
    /// <exception cref="SystemCallException">The kernel refused the memfd, the mapping or the header's backing.</exception>
    internal static InboundChannel Create(string name, ChannelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        RegionLayout layout = options.Validate();
        SharedRegion region = SharedRegion.Create(name, layout.RegionSize);
        // Emptied when we let go of it if no connection was made over it (a handshake that failed); a connection decides
        // at its end (PageRangeConnection.PunchOwnRegionIfThePeerIsDone).
        region.PunchOnLastRelease = true;
        try
        {
            // Back the header pages now: fallocate reports a lack of memory here, as an exception, rather than as a
            // SIGBUS on the first ring store. They are never shrunk.
            region.Allocate(0, layout.HeaderBytes);
            // SAFETY: the header structure lies in the first page, backed and mapped read-write above; nobody else
            // has the descriptor yet.
            *(RegionHeaderLayout*)region.BasePointer = layout.ToHeader(
                (options.ParksWithBarrier ? RegionHeaderLayout.ParkBarrierFlag : 0)
                | (options.ParksWithAdaptiveBarrier ? RegionHeaderLayout.AdaptiveParkBarrierFlag : 0));
            region.ProtectReadOnly(layout.DataOffset, layout.DataSize);
            return new InboundChannel(region, layout, options);
        }
        catch
        {
            region.Dispose();
            throw;
        }
    }

    /// <summary>Takes the next transaction off the ring, if one is published.</summary>
    /// <param name="record">The validated record; <c>default</c> when none is ready.</param>
    /// <returns>Whether a transaction was received.</returns>
    /// <exception cref="ProtocolViolationException">The peer published an invalid ring index or record.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal bool TryReceive(out TransactionRecord record)
    {
        // A batch of one: a pack's messages come out one at a time, as records do.
        record = default;
        return TryReceiveBatch(new Span<TransactionRecord>(ref record)) == 1;
    }

    /// <summary>
    /// Takes up to <paramref name="records"/>.Length published transactions off the ring under one receive lock, and
    /// stores the shared head once for all of them before returning.
    /// </summary>
    /// <param name="records">Receives the validated records, oldest first.</param>
    /// <returns>How many were taken; 0 when none is published.</returns>
    /// <remarks>
    /// A bad record ends the batch without being consumed: the records before it are returned, and the next call
    /// (whose first record it is) throws, as every later one does, so nothing after a violation is ever delivered.
    /// </remarks>
    /// <exception cref="ProtocolViolationException">The first record, or the ring's tail, is invalid.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal int TryReceiveBatch(Span<TransactionRecord> records) => TryReceiveBatch(records, ThreadToken.Current);

    /// <inheritdoc cref="TryReceiveBatch(Span{TransactionRecord})"/>
    /// <param name="records">Where the records go.</param>
    /// <param name="thread">The current thread's token, read once by the caller for all its lock passes.</param>
    internal int TryReceiveBatch(Span<TransactionRecord> records, ThreadToken thread)
    {
        // Still a lock although the connection's reader role already keeps out other receivers: Dispose waits on this
        // lock, not on the role, before it unmaps the ring, so without it a close could unmap the ring under us. Taken
        // once per batch, its cost is shared by the batch.
        using (_receiveLock.EnterScope(thread))
        {
            ThrowIfDisposed();
            int count = 0;
            bool advanced = false;
            long highWaterMark = _highWaterMark;
            while (count < records.Length)
            {
                if (_packOffset >= 0 && !TakePackEntries(records, ref count, ref advanced, ref highWaterMark))
                {
                    // The pack has no more to give now (or a bad word or entry ends the batch): its later records wait.
                    break;
                }
                if (count == records.Length)
                {
                    break;
                }
                // The ring's tail is loaded first (when the last view of it shows nothing more): the lines are looked at
                // after it, so a direct reply or call written before the record this reveals is seen now (the writer
                // stored its id or sequence before that record's tail; found by review: looked at the other way round,
                // a reply written just before a oneway could miss this pass and come after the oneway).
                bool peeked = _txRing.TryPeek(out TransactionRecordLayout raw);
                if (_packOffset < 0 && count < ReceiveBatch)
                {
                    // A reply or call written into the direct lines goes where the ring's order puts it: before the ring
                    // record at the position it names (the writer's tail when it wrote it), after every record published
                    // before it, whatever came after (DirectReplyLayout, DirectCallLayout). A pack the writer filled before
                    // it was sealed first, and is finished above before this looks.
                    DirectTake take = TryTakeDirect(count, out records[count], out TransactionRecordLayout bad, out bool badIsCall);
                    if (take == DirectTake.Taken)
                    {
                        TransportMetrics.OnReceived(records[count].Flags, records[count].Length);
                        count++;
                        continue;
                    }
                    if (take == DirectTake.Invalid)
                    {
                        // As a bad ring record: it ends the batch, and the next pass, whose first it is, throws.
                        if (count == 0)
                        {
                            if (badIsCall)
                            {
                                ThrowBadDirectCall(bad, _directCallsTaken, _txRing.Head);
                            }
                            ThrowBadDirectReply(bad, _txRing.Head);
                        }
                        break;
                    }
                }
                if (!peeked)
                {
                    break;
                }
                if ((raw.Flags & PackLayout.RecordFlag) != 0)
                {
                    if (!IsValidPackRecord(raw))
                    {
                        if (count == 0)
                        {
                            ThrowBadPackRecord(raw, _layout.DataSize);
                        }
                        break;
                    }
                    _txRing.AdvanceUnpublished();
                    advanced = true;
                    OpenPack(raw);
                    continue;
                }
                if ((raw.Flags & InlineLayout.RecordFlag) != 0)
                {
                    // Its payload is copied into the staging slot of its position in the batch: at most a batch's worth.
                    if (count >= ReceiveBatch)
                    {
                        break;
                    }
                    if (!TryTakeInline(raw, count, out TransactionRecord inline))
                    {
                        if (count == 0)
                        {
                            ThrowBadInlineRecord(raw);
                        }
                        break;
                    }
                    records[count++] = inline;
                    advanced = true;
                    // Under the receive lock: a plain increment.
                    Volatile.Write(ref _inlineReceived, _inlineReceived + 1);
                    TransportMetrics.OnReceived(inline.Flags, inline.Length);
                    continue;
                }
                if (!TryValidate(raw, out TransactionRecord record))
                {
                    if (count == 0)
                    {
                        ThrowBadRecord(raw, _layout.DataSize);
                    }
                    break;
                }
                records[count++] = record;
                PrefetchBuffer(record);
                _txRing.AdvanceUnpublished();
                advanced = true;
                TransportMetrics.OnReceived(record.Flags, record.Length);
                highWaterMark = Math.Max(highWaterMark, record.Offset + record.Length);
            }
            // Before any message leaves: a free of one of them (another thread, the free lock) must find it counted.
            FlushPackPending();
            Volatile.Write(ref _delivered, _delivered + (ulong)count);
            if (advanced)
            {
                _txRing.PublishHead();
            }
            if (count > 0)
            {
                // The head was stored once for the batch above, before any of these records leaves this method: a free
                // of one of them is published only after that store, so the writer's delivery check always sees its
                // record consumed.
                _highWaterMark = highWaterMark;
            }
            else
            {
                // Under the receive lock: a plain increment. Lets a test see that readers do not pass over an empty ring
                // before every wait.
                _emptyReceivePasses++;
            }
            return count;
        }
    }

    /// <summary>
    /// Asks for the first line of a validated record's buffer now: the peer wrote it (it is in the peer's cache), and the
    /// handler reads it only after this batch is routed and handed out (hundreds of instructions later, beyond what the
    /// core runs ahead). Fetched meanwhile, its transfer overlaps that work instead of following it: one line transfer
    /// fewer on a call's critical path per direction. A hint only: nothing is read from it here.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void PrefetchBuffer(in TransactionRecord record)
    {
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            // SAFETY: a prefetch never faults and reads nothing into the program; the address lies inside the mapped data
            // area anyway (the record was validated against it).
            System.Runtime.Intrinsics.X86.Sse.Prefetch0(_data + record.Offset);
        }
    }

    /// <summary>
    /// Takes the expected call's reply from the direct reply lines (see <see cref="DirectReplyLayout"/>), if the record
    /// line holds that id: the record copied once and validated from the copy, the payload lines it covers copied into the staging
    /// slot of batch position <paramref name="position"/>, its expectation ended. Under the receive lock.
    /// </summary>
    /// <returns><see langword="false"/> (nothing taken) when the lines do not hold the expected reply, or hold an invalid
    /// record with its id (<paramref name="invalid"/>; <paramref name="bad"/> is the copy).</returns>
    private bool TryTakeDirectReply(int position, ulong head, out TransactionRecord record, out bool invalid, out TransactionRecordLayout bad)
    {
        invalid = false;
        bad = default;
        ulong expected = ExpectedDirectReply;
        Debug.Assert(position < ReceiveBatch, "A staging slot per batch position.");
        // SAFETY: _directReply points at the reply's line set inside the mapping, which the caller's receive lock (after its disposed
        // check) keeps mapped: Dispose takes that lock before it unmaps.
        if (expected == 0 || Volatile.Read(ref _directReply->TransactionId) != expected)
        {
            record = default;
            return false;
        }
        // One copy, then only the copy is read: the peer may write the lines again at any moment.
        TransactionRecordLayout raw = *_directReply;
        TransactionFlags flags = (TransactionFlags)raw.Flags;
        if (raw.TransactionId != expected)
        {
            // Rewritten between the look and the copy: not the reply looked for (an honest writer writes it once).
            record = default;
            return false;
        }
        if (flags is not (TransactionFlags.Reply or TransactionFlags.ErrorReply)
            || raw.BufferOffset != 0
            || raw.Length > DirectReplyLayout.MaxPayload
            || raw.MetadataLength != 0
            || !HasValidContext(raw, flags)
            || raw.Reserved0 != 0
            || raw.Reserved1 > head)
        {
            record = default;
            invalid = true;
            bad = raw;
            return false;
        }
        int offset = StagePayloadLines(_directReply, (int)raw.Length, position);
        DirectReplyTakingForTest?.Invoke();
        // Taken: this call's expectation ends, and the next call may ask for the lines again. If the peer answered the
        // call another way too, its owner may have ended the expectation and another call begun one meanwhile: that one
        // has another id, so it stands (a plain store of the reader's own word; under the receive lock).
        Volatile.Write(ref _takenDirectReply, expected);
        Volatile.Write(ref _directRepliesReceived, _directRepliesReceived + 1);
        record = new TransactionRecord(raw.TransactionId, offset, (int)raw.Length, raw.Code, flags,
            new ReceivedContext(0, 0, (CallStatus)raw.Status), Pack: TransactionRecord.InlinePack);
        return true;
    }

    /// <summary>
    /// Copies the payload lines that <paramref name="length"/> bytes cover, after a direct line set's
    /// <paramref name="record"/> line, into the staging slot of batch position <paramref name="position"/> (whole lines:
    /// the bytes past the length are the writer's leftovers, never read; a line past them is not touched, so a one-line
    /// payload pulls one line); returns the slot's offset in the staging area. Under the receive lock after the disposed
    /// check, with <paramref name="length"/> from the validated copy (at most <see cref="DirectReplyLayout.MaxPayload"/>).
    /// </summary>
    private int StagePayloadLines(TransactionRecordLayout* record, int length, int position)
    {
        int offset = position * InlineLayout.MaxStagedPayload;
        // At least one line (an empty payload's line is copied too: a constant-size copy, no branch on the length).
        int lines = Math.Max(1, InlineLayout.PayloadSlots(length));
        int bytes = lines * TransactionRecordLayout.Size;
        // Both sides sliced to whole lines: the source within the payload lines, the target within the staging slot, so
        // more lines than either holds fail here in every build (the length was validated against the lines already).
        ref byte target = ref MemoryMarshal.GetReference(_inlineStaging.AsSpan(offset, InlineLayout.MaxStagedPayload)[..bytes]);
        // SAFETY: record is the record line of one of the two direct line sets inside the mapping, kept mapped by the
        // receive lock the caller holds; its payload lines follow it (DirectReplyLayout.MaxPayload bytes, the same for a
        // call's), and the span over them is sliced to the lines read.
        ref byte source = ref MemoryMarshal.GetReference(new ReadOnlySpan<byte>((byte*)record + TransactionRecordLayout.Size, DirectReplyLayout.MaxPayload)[..bytes]);
        for (int at = 0; at < bytes; at += TransactionRecordLayout.Size)
        {
            // Whole 64-byte lines of constant size: vector moves, no call.
            Unsafe.CopyBlockUnaligned(ref Unsafe.Add(ref target, at), ref Unsafe.Add(ref source, at), TransactionRecordLayout.Size);
        }
        return offset;
    }

    /// <summary>
    /// Takes the expected direct reply (see <see cref="DirectReplyLayout"/>) and nothing else, when nothing may come before
    /// it: no pack is current, the ring holds nothing to consume (its tail, loaded first, is the head, and no record of the
    /// last validated load is left: every record published before the reply was taken), no direct call waits (the batch
    /// orders the two, and refuses an invalid one), and the reply's position is reached. For a synchronous caller holding
    /// the reader role, instead of a batch (<see cref="TryReceiveBatch(Span{TransactionRecord}, ThreadToken)"/>), which
    /// takes it the same way (staged at batch position 0) but looks at the ring twice and at both line sets to find it.
    /// </summary>
    /// <returns><see langword="false"/> (nothing taken) in every other case, an invalid reply included: the batch, whose
    /// first it then is, refuses it.</returns>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal bool TryTakeDirectReplyAlone(out TransactionRecord record, ThreadToken thread)
    {
        record = default;
        // Looked at before the lock: the caller's reader role keeps the words mapped, and only the role's holder moves the
        // pack, the head and the ring's cached tail, so what the look found stays true but for what the peer writes: a
        // record or direct call published since takes a place after the head, so after the reply, which is at or before
        // it; a rewrite of the lines is caught by the take's copy (the id, then every field). The ring's tail is loaded
        // before the lines, as the batch loads them: a reply written after a ring record the load misses has a position
        // past the head, which the take's copy declines.
        if (!NothingBeforeTheDirectReply)
        {
            return false;
        }
        DirectReplyLookedAtForTest?.Invoke();
        using (_receiveLock.EnterScope(thread))
        {
            ThrowIfDisposed();
            // Its position is checked on the copy: past the head, it is declined, and the batch takes the records before
            // it, or refuses it if none was published.
            if (!TryTakeDirectReply(0, _txRing.Head, out record, out _, out _))
            {
                return false;
            }
            // Under the receive lock: plain increments, as the batch's.
            Volatile.Write(ref _delivered, _delivered + 1);
            Volatile.Write(ref _directRepliesTakenAlone, _directRepliesTakenAlone + 1);
            TransportMetrics.OnReceived(record.Flags, record.Length);
            return true;
        }
    }

    /// <summary>
    /// Runs between <see cref="TryTakeDirectReplyAlone"/>'s look and its take: lets a test write, as the peer may, in that
    /// window.
    /// </summary>
    internal Action? DirectReplyLookedAtForTest { get; set; }

    /// <summary>
    /// Runs after a direct reply was copied and validated, before its expectation ends: lets a test end the expectation and
    /// begin another, as the call's owner may when the peer answered the call another way too.
    /// </summary>
    internal Action? DirectReplyTakingForTest { get; set; }

    /// <summary>
    /// Whether the expected direct reply is in the lines and nothing else may come before it (no pack current, nothing on
    /// the ring to consume, loaded first, no direct call published): a hint for <see cref="TryTakeDirectReplyAlone"/>.
    /// </summary>
    private bool NothingBeforeTheDirectReply => _packOffset < 0 && !_txRing.HasUnconsumed && DirectReplyArrived && !DirectCallPublished;

    private enum DirectTake
    {
        /// <summary>Nothing in the direct lines to take now (none, or its place is after ring records not yet taken).</summary>
        None,

        /// <summary>A direct reply or call was taken.</summary>
        Taken,

        /// <summary>The lines hold an invalid one (a violation).</summary>
        Invalid,
    }

    /// <summary>
    /// Takes the direct reply expected, or else the next direct call, if one is there and its place in the ring's order
    /// has come: its position (the record's <c>Reserved1</c>, the writer's tail when it wrote it) is at most our head. A
    /// position past the head while the ring is empty, as loaded after the lines (acquire), names a record never published:
    /// invalid. Under the receive lock, with no pack current.
    /// </summary>
    private DirectTake TryTakeDirect(int position, out TransactionRecord record, out TransactionRecordLayout bad, out bool badIsCall)
    {
        record = default;
        bad = default;
        badIsCall = false;
        ulong head = _txRing.Head;
        bool reply = DirectReplyArrived;
        // Both there: the one with the earlier place in the ring's order first (the same place: the reply first; they were
        // written by different threads of the peer then, which gives them no order).
        // SAFETY: as DirectReplyArrived's and DirectCallPublished's: the receive lock, after the disposed check.
        if (reply && DirectCallPublished && Volatile.Read(ref _directCall->Reserved1) < Volatile.Read(ref _directReply->Reserved1))
        {
            reply = false;
        }
        if (reply)
        {
            // SAFETY: as DirectReplyArrived's: the receive lock, after the disposed check.
            if (Volatile.Read(ref _directReply->Reserved1) <= head)
            {
                if (TryTakeDirectReply(position, head, out record, out bool invalid, out bad))
                {
                    return DirectTake.Taken;
                }
                if (invalid)
                {
                    return DirectTake.Invalid;
                }
            }
            else if (!_txRing.HasData)
            {
                bad = *_directReply;
                return DirectTake.Invalid;
            }
        }
        if (DirectCallPublished)
        {
            // SAFETY: as DirectCallPublished's.
            if (Volatile.Read(ref _directCall->Reserved1) <= head)
            {
                if (TryTakeDirectCall(position, head, out record, out bad))
                {
                    return DirectTake.Taken;
                }
                badIsCall = true;
                return DirectTake.Invalid;
            }
            if (!_txRing.HasData)
            {
                bad = *_directCall;
                badIsCall = true;
                return DirectTake.Invalid;
            }
        }
        return DirectTake.None;
    }

    /// <summary>Whether the direct reply lines hold the reply expected (see <see cref="DirectReplyLayout"/>): a hint, validated when taken.</summary>
    /// <remarks>The caller holds the reader role (found open), a reading reference, or the receive lock after the disposed check.</remarks>
    private bool DirectReplyArrived
    {
        get
        {
            ulong expected = ExpectedDirectReply;
            // SAFETY: _directReply points at the reply's line set inside the mapping, kept mapped by what the caller holds (remarks).
            return expected != 0 && Volatile.Read(ref _directReply->TransactionId) == expected;
        }
    }

    /// <summary>Whether the peer wrote a direct call since the last one taken (see <see cref="DirectCallLayout"/>): a hint, validated when taken.</summary>
    /// <remarks>The caller holds the reader role (found open), a reading reference, or the receive lock after the disposed check.</remarks>
    private bool DirectCallPublished =>
        // SAFETY: _directCall points at the call's line set inside the mapping, kept mapped by what the caller holds (remarks).
        Volatile.Read(ref _directCall->Reserved0) != Volatile.Read(ref _directCallsTaken);

    /// <summary>
    /// Takes the next call from the direct call lines (see <see cref="DirectCallLayout"/>): the record copied once and
    /// validated from the copy (the sequence exactly one past the last taken), the payload lines it covers copied into the staging
    /// slot of batch position <paramref name="position"/>. Under the receive lock, after <see cref="DirectCallPublished"/>.
    /// </summary>
    /// <returns><see langword="false"/> (nothing taken) if the copy is not a valid direct call: <paramref name="bad"/> is it.</returns>
    private bool TryTakeDirectCall(int position, ulong head, out TransactionRecord record, out TransactionRecordLayout bad)
    {
        // SAFETY: as DirectCallPublished's: the caller holds the receive lock after its disposed check.
        TransactionRecordLayout raw = *_directCall;
        ulong next = _directCallsTaken + 1;
        TransactionFlags direct = DirectRequestOf(raw);
        TransactionFlags flags = (TransactionFlags)raw.Flags & ~direct;
        if (raw.Reserved0 != next
            || flags != TransactionFlags.TwoWay
            || raw.BufferOffset != 0
            || raw.Length > DirectCallLayout.MaxPayload
            || raw.MetadataLength != 0
            || !HasValidContext(raw, flags)
            || raw.Reserved1 > head)
        {
            record = default;
            bad = raw;
            return false;
        }
        int offset = StagePayloadLines(_directCall, (int)raw.Length, position);
        Volatile.Write(ref _directCallsTaken, next);
        record = new TransactionRecord(raw.TransactionId, offset, (int)raw.Length, raw.Code, flags | direct,
            new ReceivedContext(raw.ChainId, raw.Depth, CallStatus.Ok), Pack: TransactionRecord.InlinePack);
        bad = default;
        return true;
    }

    /// <summary>
    /// Validates an inline record (see <see cref="InlineLayout"/>) at the head, copies its payload out of the ring into
    /// the staging slot of batch position <paramref name="position"/>, and advances the head past both (unpublished).
    /// </summary>
    /// <returns><see langword="false"/> (nothing consumed) if the record is invalid or its payload was not published with it.</returns>
    private bool TryTakeInline(in TransactionRecordLayout raw, int position, out TransactionRecord record)
    {
        TransactionFlags direct = DirectRequestOf(raw);
        TransactionFlags flags = (TransactionFlags)(raw.Flags & ~InlineLayout.RecordFlag) & ~direct;
        // Each check reads only the private copy, as TryValidate's.
        if (!InlineLayout.IsInlineKind(flags)
            || (direct != 0 && flags != TransactionFlags.TwoWay)
            || raw.BufferOffset != 0
            || raw.Length > InlineLayout.MaxPayload
            || raw.MetadataLength != 0
            || !HasValidContext(raw, flags)
            || raw.Reserved0 != 0
            || raw.Reserved1 != 0)
        {
            record = default;
            return false;
        }
        int length = (int)raw.Length;
        int offset = position * InlineLayout.MaxStagedPayload;
        if (!_txRing.TryTakeInline(InlineLayout.PayloadSlots(length), _inlineStaging.AsSpan(offset, InlineLayout.MaxPayload)))
        {
            record = default;
            return false;
        }
        record = new TransactionRecord(raw.TransactionId, offset, length, raw.Code, flags | direct,
            new ReceivedContext(raw.ChainId, raw.Depth, (CallStatus)raw.Status), Pack: TransactionRecord.InlinePack);
        return true;
    }

    /// <summary>
    /// A record's <see cref="DirectReplyLayout.RequestFlag"/>, as the internal <see cref="TransactionFlagsExtensions.DirectReplyRequested"/>
    /// (kept in the received record's flags, masked from what a handler sees); the caller checks it comes on a two-way call only.
    /// </summary>
    private static TransactionFlags DirectRequestOf(in TransactionRecordLayout raw) =>
        (raw.Flags & DirectReplyLayout.RequestFlag) != 0 ? TransactionFlagsExtensions.DirectReplyRequested : 0;

    /// <summary>
    /// Copies the payload of an inline transaction taken by the last batch (see <see cref="InlineLayout"/>) into
    /// <paramref name="destination"/>, its private home from now on. Only the reader that took the batch calls this,
    /// before it takes the next one (the staging slots are reused by every batch).
    /// </summary>
    internal void CopyInlinePayload(in TransactionRecord record, Span<byte> destination)
    {
        Debug.Assert(record.Inline, "Only an inline record's payload is staged.");
        Debug.Assert(destination.Length >= InlineLayout.MaxStagedPayload, "The destination holds whole slots.");
        // Whole 64-byte lines of constant size (unrolled into vector moves, no call), as the ring's were staged.
        // SAFETY (the refs): the record is this channel's own making (TryTakeInline, TryTakeDirectReply, TryTakeDirectCall):
        // its offset is a staging position's start and its length at most InlineLayout.MaxStagedPayload, so the lines read
        // lie inside that position's MaxStagedPayload bytes; the destination holds MaxStagedPayload bytes (asserted; the
        // connection's slot arrays are that size).
        int lines = InlineLayout.PayloadSlots(record.Length);
        // Sliced, so a length or offset out of place fails here in every build, not only the assertions'.
        ref byte source = ref MemoryMarshal.GetReference(_inlineStaging.AsSpan((int)record.Offset, lines * TransactionRecordLayout.Size));
        ref byte target = ref MemoryMarshal.GetReference(destination[..(lines * TransactionRecordLayout.Size)]);
        for (int line = 0; line < lines; line++)
        {
            int at = line * TransactionRecordLayout.Size;
            Unsafe.CopyBlockUnaligned(ref Unsafe.Add(ref target, at), ref Unsafe.Add(ref source, at), TransactionRecordLayout.Size);
        }
    }

    /// <summary>The payload of a received transaction, in place.</summary>
    /// <remarks>Valid until the transaction is freed or the channel is disposed; the memory is read-only.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The record does not lie inside the data area.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    /// <remarks>The caller's own copy of the record (a transaction handle passes just its payload's bounds, copied once).</remarks>
    internal ReadOnlySpan<byte> GetPayload(in TransactionRecord record)
    {
        if (record.Inline)
        {
            // Staged, private: valid until the next batch (the connection copies it into the transaction's slot first).
            ThrowIfDisposed();
            return _inlineStaging.AsSpan((int)record.Offset, record.Length);
        }
        // The whole record checked (metadata within the buffer), then its payload's bounds as any caller's.
        CheckInDataArea(record);
        return GetPayload(record.PayloadOffset, record.PayloadLength);
    }

    /// <summary>
    /// The payload at <paramref name="payloadOffset"/> of <paramref name="payloadLength"/> bytes, in place: a record's
    /// payload bounds, copied by the caller (a transaction handle reads just these two, not its whole record).
    /// </summary>
    /// <inheritdoc cref="GetPayload(in TransactionRecord)"/>
    internal ReadOnlySpan<byte> GetPayload(long payloadOffset, int payloadLength)
    {
        ThrowIfDisposed();
        CheckPayloadInDataArea(payloadOffset, payloadLength);
        // SAFETY: [payloadOffset, payloadOffset+payloadLength) lies inside the data area (checked above), mapped until
        // Dispose.
        return new ReadOnlySpan<byte>(_data + payloadOffset, payloadLength);
    }

    /// <summary>The metadata block at the start of a received transaction's buffer, in place (empty when it has none).</summary>
    /// <remarks>The peer can still write these bytes: copy them once before parsing.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The record does not lie inside the data area.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal ReadOnlySpan<byte> GetMetadata(TransactionRecord record)
    {
        ThrowIfDisposed();
        if (record.Inline)
        {
            // An inline record carries no metadata (validated): its offset is not one in the data area.
            return [];
        }
        CheckInDataArea(record);
        // SAFETY: [Offset, Offset+MetadataLength) lies inside [Offset, Offset+Length), inside the data area (checked
        // above), mapped until Dispose.
        return new ReadOnlySpan<byte>(_data + record.Offset, record.MetadataLength);
    }

    /// <summary>The payload of a received transaction as memory, in place (no copy, no allocation).</summary>
    /// <remarks>Valid until the transaction is freed or the channel is disposed.</remarks>
    /// <exception cref="ArgumentOutOfRangeException">The record does not lie inside the data area.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal ReadOnlyMemory<byte> GetPayloadMemory(in TransactionRecord record)
    {
        if (record.Inline)
        {
            // Staged, private: valid until the next batch, as GetPayload's.
            ThrowIfDisposed();
            return _inlineStaging.AsMemory((int)record.Offset, record.Length);
        }
        CheckInDataArea(record);
        return GetPayloadMemory(record.PayloadOffset, record.PayloadLength);
    }

    /// <summary>The payload at <paramref name="payloadOffset"/> of <paramref name="payloadLength"/> bytes as memory, in place (the bounds copied by the caller).</summary>
    /// <inheritdoc cref="GetPayloadMemory(in TransactionRecord)"/>
    internal ReadOnlyMemory<byte> GetPayloadMemory(long payloadOffset, int payloadLength)
    {
        ThrowIfDisposed();
        CheckPayloadInDataArea(payloadOffset, payloadLength);
        return _memory.Memory.Slice((int)payloadOffset, payloadLength);
    }

    /// <summary>
    /// The lock that serialises frees (and that <see cref="Dispose"/> takes before unmapping): an owner that frees
    /// under a lock of its own uses this one as that lock and calls <see cref="FreeUnderLock(in TransactionRecord)"/>.
    /// </summary>
    internal ThinLock FreeLock => _freeLock;

    /// <summary>The lock every ring read holds (<see cref="TryReceiveBatch(Span{TransactionRecord})"/>), for tests of its bias.</summary>
    internal ThinLock ReceiveLock => _receiveLock;

    /// <summary>Gives a received transaction's buffer back to the writer (binder's <c>BC_FREE_BUFFER</c>) and wakes it if it is parked.</summary>
    /// <exception cref="ProtocolViolationException">The free ring is full: the writer let more buffers live than
    /// the ring holds, or this buffer was freed twice.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    internal void Free(in TransactionRecord record)
    {
        using (_freeLock.EnterScope())
        {
            FreeUnderLock(record);
        }
    }

    /// <summary><see cref="Free"/> for a caller that holds <see cref="FreeLock"/> already: no second lock round trip.</summary>
    /// <remarks>Safety: the caller holds <see cref="FreeLock"/> (asserted in Debug builds), so no other free publishes
    /// and <see cref="Dispose"/> cannot unmap the ring meanwhile.</remarks>
    /// <inheritdoc cref="Free"/>
    internal void FreeUnderLock(in TransactionRecord record) => FreeUnderLock(record, deferPublish: false);

    /// <summary>
    /// <see cref="FreeUnderLock(in TransactionRecord)"/> that may hold the free ring's tail back for a batch: with
    /// <paramref name="deferPublish"/>, a small buffer's free (at most <see cref="FreeBatchMaxLength"/> bytes, not
    /// clear-on-free) is written to the ring and published later, with the next free that publishes or by
    /// <see cref="PublishFreesUnderLock"/>; one tail store and one doorbell ring then cover the batch.
    /// </summary>
    /// <param name="record">The received transaction whose buffer goes back.</param>
    /// <param name="deferPublish">The caller will publish soon (its receiver is behind and comes straight back for
    /// the next message), and promises to call <see cref="PublishFreesUnderLock"/> before its receiver waits.</param>
    /// <remarks>
    /// The tail is published now anyway when <see cref="FreeBatch"/> frees are held, when the buffer is large or to be
    /// cleared (the writer wants that memory, or a secret zeroed, without waiting for a batch), and when the writer
    /// says it is parked on the free doorbell (waiting for room: it must not wait on frees we hold).
    /// </remarks>
    /// <inheritdoc cref="Free"/>
    internal void FreeUnderLock(in TransactionRecord record, bool deferPublish)
    {
        Debug.Assert(_freeLock.IsHeldByCurrentThread, "FreeUnderLock without the free lock held.");
        ThrowIfDisposed();
        if (record.Pack > 0)
        {
            FreePackedUnderLock(record, deferPublish);
            return;
        }
        // An inline transaction has no buffer: its free only gives the writer's live count back (see InlineLayout).
        // The record's two words (FreeRecordLayout: BufferOffset, TransactionId) from registers, not built on the stack.
        if (!_freeRing.TryWriteUnpublished(record.Inline ? InlineLayout.FreeOffset : (ulong)record.Offset, record.TransactionId))
        {
            ThrowFreeRingFull();
        }
        PageRangeMetrics.RecordFree();
        // SAFETY (the parked word): _freeParked points into the mapping, which Dispose unmaps only after taking the free
        // lock we hold. A plain load, a hint: the word's line is written only when the writer parks, so it stays shared
        // in both caches and costs no transfer. A parked count we miss (the writer parks just after) is caught by the
        // publish before our receiver waits, and by the doorbell's own Dekker check then.
        if (deferPublish && _freeRing.Unpublished < FreeBatch && record.Length <= FreeBatchMaxLength
            && (record.Flags & TransactionFlags.ClearOnFree) == 0 && Volatile.Read(ref *_freeParked) == 0)
        {
            return;
        }
        PublishFreesCore();
    }

    /// <summary>
    /// Counts a pack's message freed; the pack's own free goes to the writer once it is finished (sealed and consumed)
    /// and this was the last of its messages still live.
    /// </summary>
    private void FreePackedUnderLock(in TransactionRecord record, bool deferPublish)
    {
        ref PackState pack = ref _packs[record.Pack - 1];
        Debug.Assert(Volatile.Read(ref pack.InUse) != 0, "A pack's message freed after the pack itself.");
        PageRangeMetrics.RecordFree();
        // Plain counts: every writer of Freed and _packedFreed holds the free lock (we do). Release: the receiver's cap
        // check reads _packedFreed without it.
        Volatile.Write(ref _packedFreed, _packedFreed + 1);
        pack.Freed++;
        // Finished is set under the free lock (FinishPack) after Taken is final: Taken is read only then.
        if (pack.Finished && pack.Freed == pack.Taken)
        {
            WritePackFreeAndReleaseUnderLock(ref pack);
        }
        else if (!deferPublish)
        {
            // Frees held for a batch go with this one, as a published free of a buffer would take them.
            PublishFreesCore();
        }
    }

    /// <summary>
    /// Writes and publishes the one free of a finished pack whose messages were all freed, then gives its table slot
    /// back (the receiver may reuse it for a new pack from then on). The caller holds the free lock.
    /// </summary>
    private void WritePackFreeAndReleaseUnderLock(ref PackState pack)
    {
        FreeRecordLayout free = new() { BufferOffset = (ulong)pack.Offset };
        if (!_freeRing.TryWriteUnpublished(in free))
        {
            ThrowFreeRingFull();
        }
        // Release, last: the receiver's OpenPack reads InUse with acquire and only then rewrites the slot's fields.
        Volatile.Write(ref pack.InUse, 0);
        // Now: a pack's pages are worth more to the writer than one small buffer's, and it is one free per pack.
        PublishFreesCore();
    }

    /// <summary>Frees written but not yet published (a hint from any thread; exact under <see cref="FreeLock"/>).</summary>
    internal int UnpublishedFrees => _freeRing.Unpublished;

    /// <summary>Publishes the frees <see cref="FreeUnderLock(in TransactionRecord, bool)"/> held back, if any, and wakes a parked writer.</summary>
    /// <remarks>Safety: the caller holds <see cref="FreeLock"/>. Does nothing once the channel is disposed (the ring is gone).</remarks>
    internal void PublishFreesUnderLock()
    {
        Debug.Assert(_freeLock.IsHeldByCurrentThread, "PublishFreesUnderLock without the free lock held.");
        if (Volatile.Read(ref _disposed) == 0)
        {
            PublishFreesCore();
        }
    }

    private void PublishFreesCore()
    {
        if (_freeRing.PublishTail())
        {
            // Inside the lock: Dispose takes it before unmapping, so the doorbell's words are still mapped. Without a fence
            // once the writer promised to pay for it when it parks (PublishFreesWithoutFence).
            _freeDoorbell.RingAfterPublish();
        }
    }

    /// <summary>Waits until a transaction is published, using the options' <see cref="WaitStrategy"/>.</summary>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>Whether a transaction is ready (<see langword="false"/>: timed out).</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed, before or during the wait.</exception>
    internal bool WaitForTransaction(TimeSpan timeout, CancellationToken cancellationToken) =>
        WaitForTransaction(timeout, _options.WaitStrategy, cancellationToken);

    /// <summary>Waits until a transaction is published, with <paramref name="strategy"/> instead of the options' one.</summary>
    /// <inheritdoc cref="WaitForTransaction(TimeSpan, CancellationToken)"/>
    internal bool WaitForTransaction(TimeSpan timeout, WaitStrategy strategy, CancellationToken cancellationToken)
    {
        long deadline = Doorbell.DeadlineAfter(ValidateTimeout(timeout));
        ThrowIfDisposed();
        // The doorbell holds a reference while it waits, so its words stay mapped even if Dispose runs meanwhile.
        TransactionReady condition = new(this);
        bool ready;
        try
        {
            ready = _txDoorbell.Wait(ref condition, strategy, _options.SpinDuration, _options.ParkTimeout, deadline, cancellationToken);
            ReadAtNextPacedLook(ready);
        }
        finally
        {
            // Cleared after the wait, never before: a nudge that lands between the caller's last check and this wait
            // must still cut it short. A stale nudge costs one early return, and the caller looks again. An exchange,
            // a full fence: the clear may wipe a nudge that landed just now, and the caller's next look (the handoff,
            // the ready count) must then see what that nudge announced; after a plain store that load could pass the
            // clear and read the old value, and the caller would park with no nudge pending (found by review).
            ClearNudge();
        }
        ThrowIfDisposed();
        return ready;
    }

    /// <summary>
    /// <see cref="WaitForTransaction(TimeSpan, CancellationToken)"/> until a <see cref="Stopwatch"/> deadline the caller
    /// already computed: no clock read or time conversion of its own before the wait's first check, which is all a
    /// wait costs when the transaction is already there.
    /// </summary>
    /// <param name="deadline">A <see cref="Stopwatch.GetTimestamp"/> value; <see cref="long.MaxValue"/> for none.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>Whether a transaction is ready (or the channel was released, nudged or disposed).</returns>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel was disposed.</exception>
    /// <remarks>The caller holds the reader role (<see cref="TryTakeReaderRole"/>, found open) or a reading reference
    /// (<see cref="TryEnterReading"/>) for the whole call.</remarks>
    internal bool WaitForTransactionUntil(long deadline, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        TransactionReady condition = new(this);
        bool ready;
        try
        {
            ready = _txDoorbell.WaitReferenced(ref condition, _options.WaitStrategy, _options.SpinDuration, _options.ParkTimeout, deadline, cancellationToken);
            ReadAtNextPacedLook(ready);
        }
        finally
        {
            // As in WaitForTransaction: cleared after the wait, never before, with a full fence.
            ClearNudge();
        }
        ThrowIfDisposed();
        return ready;
    }

    /// <summary>
    /// After a wait that ended ready, the next paced look reads (<see cref="ReceiveMaybeReadyPaced"/>): a wait may end on
    /// an exact look (a park's, the spin's last), and the pass that follows it must not be turned away.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ReadAtNextPacedLook(bool ready)
    {
        if (ready)
        {
            _packPollsSkipped = PackPollInterval - 1;
        }
    }

    /// <summary>Clears a nudge after a wait, with an exchange (a full fence) only when there is one to clear.</summary>
    /// <remarks>
    /// The fence matters only to a clear that wipes a nudge: the caller's next look must then see what the nudge
    /// announced. With no nudge set, nothing is wiped, and a nudge that lands after the load stays set: the next wait
    /// returns at once and the caller looks again. So a round trip's waits (the reply there, no nudge) pay a load, not
    /// a locked instruction each.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ClearNudge()
    {
        if (Volatile.Read(ref _nudged) != 0)
        {
            Interlocked.Exchange(ref _nudged, 0);
        }
    }

    /// <summary>
    /// Whether a wait for a transaction would return at once (one is published, or the channel was released, nudged or
    /// disposed): the wait's own first check, for a reader that reads the ring at once if so instead of waiting.
    /// </summary>
    /// <remarks>
    /// A hint, read as the doorbell's first check is (the disposed flag first, then the ring's tail). The caller holds
    /// the reader role (found open) or a reading reference (<see cref="TryEnterReading"/>): the tail is a shared word,
    /// and a dispose on another thread between the flag and the tail would otherwise unmap it under the read.
    /// </remarks>
    internal bool TransactionMaybeReady => new TransactionReady(this).IsReady;

    /// <summary>
    /// <see cref="TransactionMaybeReady"/> for a look that is repeated while nothing comes (a receiver's loop between its
    /// waits): a current pack's Committed word only once in <see cref="PackPollInterval"/> looks (<see cref="ReceiveMaybeReadyPaced"/>).
    /// </summary>
    internal bool TransactionMaybeReadyPaced => new TransactionReady(this).PollReady();

    /// <summary>
    /// Whether the ring (or the current pack) may hold records to receive now: <see cref="TransactionMaybeReady"/> without
    /// the flags that cut a wait short (a nudge, the peer's release, a dispose), for a reader that reads the ring at once
    /// if so and otherwise does something else than wait. A hint; the caller holds the reader role (found open) or a
    /// reading reference.
    /// </summary>
    internal bool RecordsMaybeReady => Volatile.Read(ref _disposed) == 0 && ReceiveMaybeReady;

    /// <summary>
    /// <see cref="RecordsMaybeReady"/> for a look that is repeated while nothing comes (a receiver's loop between its
    /// waits): a current pack's Committed word only once in <see cref="PackPollInterval"/> looks (<see cref="ReceiveMaybeReadyPaced"/>).
    /// </summary>
    internal bool RecordsMaybeReadyPaced => Volatile.Read(ref _disposed) == 0 && ReceiveMaybeReadyPaced;

    /// <summary>
    /// Takes a reference that keeps the ring's shared words mapped until <see cref="ExitReading"/>, for a reader that looks
    /// at the ring (<see cref="TransactionMaybeReady"/>) and waits on it (<see cref="WaitForTransactionUntil"/>) in a loop
    /// outside the receive lock: one reference round trip per loop instead of one per look. <see cref="Dispose"/> run
    /// meanwhile still marks the channel disposed (the looks and waits see it); the unmap waits for the exit.
    /// </summary>
    /// <returns><see langword="false"/> once the region is closed (nothing may be read from it then).</returns>
    internal bool TryEnterReading() => _region.TryAddRef();

    /// <summary>Gives back the reference <see cref="TryEnterReading"/> took.</summary>
    internal void ExitReading() => _region.ReleaseRef();

    /// <summary>
    /// Takes the connection's reader role: the right to consume the ring and park on its doorbell, one thread at a time.
    /// The role also keeps the ring mapped, without a reference of its own per holder: after taking it, the holder reads
    /// the disposed flag once before any look at the ring's shared words (<see cref="OpenToReaderRole"/>, or the
    /// disposed check of <see cref="TryReceiveBatch(Span{TransactionRecord})"/> under the receive lock) and, if open, may look at them until it
    /// releases the role. A look outside the receive lock before that check would break the protocol.
    /// </summary>
    /// <remarks>
    /// <para>
    /// The role's reference on the region was taken at construction; whichever of <see cref="Dispose"/> and the role's
    /// release (<see cref="ReleaseReaderRole"/>, then the caller's full fence where <see cref="RoleReleaseNeedsFence"/>,
    /// then <see cref="AfterReaderRoleReleased"/>) sees the other's store gives it back, and the claim makes sure only
    /// one does. Dekker: Dispose sets the disposed flag (an exchange), issues the process-wide barrier where it reaches
    /// every core, and then reads the role; the holder releases the role with a plain store and then reads the flag and
    /// the role. The barrier stands in for a fence between the release's store and its load (the frequent side: a
    /// synchronous round trip releases the role twice, and the locked instruction was ~7 ns each on its critical path):
    /// if the releaser's load of the flag came before the barrier's fence on its core, so did its store, which the
    /// barrier then made visible to Dispose's load; otherwise its load comes after the flag's exchange and sees it. So
    /// either Dispose sees the role free (and unmaps, the last reference allowing), or the holder sees the dispose after
    /// its release (and unmaps, unless another thread holds the role by then: that one's release looks in turn); both
    /// may, never neither. A thread that takes the role after Dispose, or a releaser, saw it free reads the flag after its
    /// compare-exchange (a full fence) and sees the dispose: it does not read the ring. The exhaustive model of both
    /// forms under x86-TSO is <c>tools/models/reader-role-model.py hold</c>.
    /// </para>
    /// <para>
    /// It saves the reader two locked instructions per pass (the reference's compare-exchange and decrement): a
    /// synchronous round trip takes the role twice.
    /// </para>
    /// </remarks>
    /// <returns>Whether the role was free and is now the caller's.</returns>
    internal bool TryTakeReaderRole() => Interlocked.CompareExchange(ref _readerRole, 1, 0) == 0;

    /// <summary>Whether some thread holds the reader role now (a hint for the connection's waiters).</summary>
    internal bool ReaderRoleHeld => Volatile.Read(ref _readerRole) != 0;

    /// <summary>
    /// For the reader role's holder, once after <see cref="TryTakeReaderRole"/>: whether the ring is still mapped for it
    /// (not disposed). If so it stays mapped until the role's release, even if <see cref="Dispose"/> runs meanwhile.
    /// </summary>
    internal bool OpenToReaderRole => Volatile.Read(ref _disposed) == 0;

    /// <summary>
    /// The first half of the role's release: a plain store. Where <see cref="RoleReleaseNeedsFence"/>, the caller then
    /// makes a full fence (the connection does, with its notice to its followers, a locked increment, and also where it
    /// is not needed here: once a thread waited for the role, or while a follower is counted); then it calls
    /// <see cref="AfterReaderRoleReleased"/>.
    /// </summary>
    internal void ReleaseReaderRole() => Volatile.Write(ref _readerRole, 0);

    /// <summary>
    /// Whether a release of the role needs a full fence between its store and <see cref="AfterReaderRoleReleased"/>:
    /// only where <see cref="Dispose"/>'s process-wide barrier does not reach every core (see <see cref="TryTakeReaderRole"/>).
    /// </summary>
    internal static bool RoleReleaseNeedsFence => !ProcessWideBarrier.ReachesEveryCore;

    /// <summary>
    /// The second half of the role's release, after the caller's fence if it needs one: if the channel was disposed while the role
    /// was held, the unmap Dispose left to the role happens now (see <see cref="TryTakeReaderRole"/>).
    /// </summary>
    internal void AfterReaderRoleReleased()
    {
        // Only while the role is still free: a thread that took it since our store may have found the ring open (before
        // the dispose) and be reading it; its own release gives the reference back (found by review: without this look,
        // the previous holder's late check unmapped the ring under the next holder).
        if (Volatile.Read(ref _disposed) != 0 && !ReaderRoleHeld)
        {
            ReleaseReaderRoleReference();
        }
    }

    /// <summary>Whether the reader role's reference on the region was given back (for tests: never while a holder that
    /// found the ring open still holds the role).</summary>
    internal bool ReaderRoleReferenceGivenBack => Volatile.Read(ref _readerRoleReferenceReleased) != 0;

    private void ReleaseReaderRoleReference()
    {
        if (Interlocked.Exchange(ref _readerRoleReferenceReleased, 1) == 0)
        {
            _region.ReleaseRef();
        }
    }

    /// <summary>Batch receives (<see cref="TryReceiveBatch(Span{TransactionRecord})"/>) that found the ring empty, for tests.</summary>
    internal long EmptyReceivePasses => Volatile.Read(ref _emptyReceivePasses);

    /// <summary>Futex waits of readers on the transaction doorbell so far: lets a test see that a reader is parked.</summary>
    internal long ReaderParks => _txDoorbell.Parks;

    /// <summary>Whether our readers decide park by park whether to issue the park barrier (<see cref="AdaptiveBarrier"/>).</summary>
    internal bool ReadersParkWithAdaptiveBarrier => _txDoorbell.ParksWithAdaptiveBarrier;

    /// <summary>Whether our readers' next park issues the adaptive barrier.</summary>
    internal bool ReadersAdaptiveBarrierOn => _txDoorbell.AdaptiveBarrierOn;

    /// <summary>Switches of our readers' adaptive barrier so far.</summary>
    internal long ReaderBarrierSwitches => _txDoorbell.BarrierSwitches;

    /// <summary>Sets our readers' adaptive barrier thresholds (<see cref="Doorbell.SetBarrierThresholdsForTest"/>).</summary>
    internal void SetReaderBarrierThresholdsForTest(int onAfter, int offBelow) =>
        _txDoorbell.SetBarrierThresholdsForTest(onAfter, offBelow);

    /// <summary>Park barriers our readers issued (each before a park; see <see cref="ParkBarrier"/>).</summary>
    internal long ReaderParkBarriers => _txDoorbell.ParkBarriers;

    /// <summary>Park barriers our readers' parks issued and the kernel refused (they parked a millisecond at most).</summary>
    internal long ReaderParkBarrierFailures => _txDoorbell.ParkBarrierFailures;

    /// <summary>Makes our readers' next <paramref name="count"/> park barriers fail (<see cref="Doorbell.RefuseParkBarriersForTest"/>).</summary>
    internal void RefuseReaderParkBarriersForTest(int count) => _txDoorbell.RefuseParkBarriersForTest(count);

    /// <summary>Whether our readers issue the park barrier (and the region's header says so).</summary>
    internal bool ReadersParkWithBarrier => _txDoorbell.ParksWithBarrier;

    /// <summary>Whether frees are published without a fence (see <see cref="PublishFreesWithoutFence"/>).</summary>
    internal bool FreesRingWithoutFence => _freeDoorbell.RingsWithoutFence;

    /// <summary>
    /// From now on, publishes frees without the doorbell's fence: the writer promised (its own region's
    /// <see cref="RegionHeaderLayout.ParkBarrierFlag"/>) to issue a <see cref="ParkBarrier"/> before it parks waiting for
    /// room, which pays for both sides' fences as a receiver's park does for a writer's publish. Only if this process is
    /// registered for the barrier (else it would not reach our threads) and the options use it; otherwise nothing changes.
    /// </summary>
    /// <remarks>
    /// Called once, before the first free (a connection calls it while it is made, before any transaction arrives); a
    /// thread that still saw the old setting only fences needlessly. The writer's word is trusted only as far as its own
    /// wakes go: if it parks without the barrier, its wait for room may last until its park timeout; ours never depend on it.
    /// </remarks>
    /// <returns>Whether frees now go without the fence.</returns>
    internal bool PublishFreesWithoutFence()
    {
        if (!_options.UseParkBarrier || !ParkBarrier.Registered)
        {
            return false;
        }
        _freeDoorbell.RingWithoutFenceFromNow();
        return true;
    }

    /// <summary>The most buffers (and inline transactions) the writer may have live in this region (see <see cref="RegionLayout.MaxLiveBuffers"/>).</summary>
    internal int MaxLiveBuffers => _layout.MaxLiveBuffers;

    /// <summary>
    /// The most transactions this channel hands out that may be live at once: one per live buffer, plus the messages
    /// taken from packs (<see cref="MaxPackedLive"/>); the owner keeps one slot for each.
    /// </summary>
    internal int MaxLiveTransactions => _layout.MaxLiveBuffers + MaxPackedLive;

    /// <summary>Wakes a reader parked in <see cref="WaitForTransaction(TimeSpan, CancellationToken)"/> without publishing anything, e.g. when the peer died.</summary>
    /// <remarks>
    /// Sticky: the wait condition reads the flag, so a reader woken (or about to park) does not park again for a whole
    /// park timeout; it returns, and its caller notices what changed (the peer's death).
    /// </remarks>
    internal void WakeReader()
    {
        Volatile.Write(ref _released, 1);
        _txDoorbell.WakeAllIfOpen();
    }

    /// <summary>
    /// Wakes a reader parked in <see cref="WaitForTransaction(TimeSpan, CancellationToken)"/> once, without publishing
    /// anything: something it waits for became ready on our side (a backlogged oneway released), not in the ring.
    /// </summary>
    /// <remarks>
    /// A system call only when a reader announced it is parked: a spinning reader sees the flag in its wait condition.
    /// This is the doorbell's producer side, as after a publish (the flag's store, then <see cref="Doorbell.Ring"/>'s
    /// check of the parked count, Dekker with the reader's announcement): without it, a receiver that is behind on
    /// oneways while another thread holds the reader role (an async receiver's background reader) made a
    /// <c>FUTEX_WAKE</c> at every release.
    /// </remarks>
    internal void NudgeReader()
    {
        Volatile.Write(ref _nudged, 1);
        // The reference keeps the doorbell's words mapped even if Dispose runs meanwhile; once closed, nobody is parked.
        if (_region.TryAddRef())
        {
            try
            {
                _txDoorbell.Ring();
            }
            finally
            {
                _region.ReleaseRef();
            }
        }
    }

    /// <summary>Ring positions of this region, for the connection's state dump.</summary>
    /// <remarks>
    /// The shared words are shown as they are now, unvalidated (the peer writes some of them); our own positions are
    /// the private copies. Resident pages count the header pages too.
    /// </remarks>
    internal string DumpState()
    {
        // The reference keeps the header mapped while we read it, even if Dispose runs meanwhile.
        if (!_region.TryAddRef())
        {
            return "  (closed)\n";
        }
        try
        {
            // SAFETY: the header lies in the first page, mapped while we hold the reference; a torn read of a word the
            // peer is writing only shows a stale value in the dump.
            RegionHeaderLayout shared = *(RegionHeaderLayout*)_region.BasePointer;
            long resident = _region.ResidentBytesCore;
            long highWaterMark = Volatile.Read(ref _highWaterMark);
            int pageSize = SharedRegion.PageSize;
            return string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"  region {_region.Size} bytes, data area {_layout.DataSize} bytes at {_layout.DataOffset} ({_layout.DataSize / pageSize} pages)\n" +
                $"  resident {resident} bytes ({resident / pageSize} pages, {_layout.HeaderBytes / pageSize} of them header)\n" +
                $"  pages high watermark: {(highWaterMark + pageSize - 1) / pageSize} (highest payload byte received: {highWaterMark})\n" +
                $"  ring slots taken: {_txRing.Head} ({InlineReceived} transactions with their payload inline), frees published: {Freed} (held for a batch: {UnpublishedFrees})\n" +
                $"  direct lines: {DirectRepliesReceived} replies taken (expecting call {ExpectedDirectReply}), {DirectCallsReceived} calls taken\n" +
                $"  packs of small oneways: {PacksReceived} taken, {Volatile.Read(ref _packedTaken)} messages from them in {Volatile.Read(ref _packLooks)} looks at a Committed word, {PackedLiveAtMost} not yet freed; " +
                $"paced looks at it {Volatile.Read(ref _packWaitLooks)} of {Volatile.Read(ref _packWaitPolls)}; next packs prefetched at the seal {NextPackPrefetches} ({NextPackHintsRefused} hints refused); " +
                $"{(_trailsStreams ? $"packs taken whole behind a stream {PacksTrailed}, trails given up {TrailsGivenUp}" : "streams not trailed")}\n" +
                $"  ring positions: tx head {_txRing.Head} (ours) tail {shared.TxTail} (peer's) of {_layout.TxRingCapacity}, " +
                $"free tail {_freeRing.Tail} (ours) head {shared.FreeHead} (peer's) of {_layout.FreeRingCapacity}, " +
                $"parked readers {shared.TxDoorbellParked}, parked writers {shared.FreeDoorbellParked}\n" +
                $"  fences: frees {(FreesRingWithoutFence ? "without a fence (the peer's writer parks with the barrier)" : "with a fence")}; " +
                $"readers park {(ReadersParkWithBarrier ? "with" : ReadersParkWithAdaptiveBarrier ? (ReadersAdaptiveBarrierOn ? "with (adaptive, now on)" : "without (adaptive, now off)") : "without")} the park barrier: " +
                $"{ReaderParks} parks, {ReaderParkBarriers} barriers, {_txDoorbell.ParkBarrierFailures} refused, {ReaderBarrierSwitches} switches\n");
        }
        finally
        {
            _region.ReleaseRef();
        }
    }

    /// <summary>Wakes every waiter, then unmaps the region once no receive or free is running.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        // Waiters hold their own reference, so the words stay mapped for them; the wake makes them see the dispose.
        _txDoorbell.WakeAll();
        _receiveLock.Enter();
        _freeLock.Enter();
        _freeLock.Exit();
        _receiveLock.Exit();
        // After the exchange above (a full fence) and, where it reaches every core, the process-wide barrier, which
        // stands in for the fence a plain release of the role does not make: a holder of the reader role gives the role's
        // reference back itself when it releases the role (TryTakeReaderRole).
        if (ProcessWideBarrier.ReachesEveryCore)
        {
            Interlocked.MemoryBarrierProcessWide();
        }
        if (!ReaderRoleHeld)
        {
            ReleaseReaderRoleReference();
        }
        _region.ReleaseRef();
        _region.Dispose();
    }

    internal void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }

    internal static TimeSpan ValidateTimeout(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A timeout is zero or more, or Timeout.InfiniteTimeSpan.");
        }
        return timeout;
    }

    /// <summary>Whether a private copy of a record marked as a pack's is a valid one (see <see cref="PackLayout"/>).</summary>
    private bool IsValidPackRecord(in TransactionRecordLayout raw)
    {
        ulong dataSize = (ulong)_layout.DataSize;
        // Only the private copy; Length <= dataSize - offset after offset <= dataSize cannot overflow.
        return raw.Flags == ((uint)TransactionFlags.Oneway | PackLayout.RecordFlag)
            && raw.BufferOffset <= dataSize
            && raw.Length <= dataSize - raw.BufferOffset
            && (raw.BufferOffset & 7) == 0
            && raw.Length >= PackLayout.MinCapacity
            && raw.Length <= PackLayout.MaxCapacity
            && (raw.Length & 7) == 0
            && raw.TransactionId == 0
            && raw.Code == 0
            && raw.Status == 0
            && raw.ChainId == 0
            && raw.Depth == 0
            && raw.MetadataLength == 0
            && raw.Reserved0 == 0
            && raw.Reserved1 == 0;
    }

    /// <summary>Makes a validated pack record's pack the current one, with a slot of the table that owes it its free.</summary>
    private void OpenPack(in TransactionRecordLayout raw)
    {
        // A free slot exists: at most MaxPackedLive finished packs have messages live (each holds one at least), and
        // the previous current pack was finished before this record was reached.
        int index = _packSearch;
        while (Volatile.Read(ref _packs[index].InUse) != 0)
        {
            index = index + 1 == _packs.Length ? 0 : index + 1;
        }
        _packSearch = index + 1 == _packs.Length ? 0 : index + 1;
        // Not in use: no free touches the slot (its last one wrote InUse after everything else, with release), and none
        // can until a message of this pack is handed out, after this batch (the connection's routing lock, or the
        // caller's own hand-off, orders these stores before that free).
        ref PackState pack = ref _packs[index];
        pack.Offset = (long)raw.BufferOffset;
        pack.Taken = 0;
        pack.Freed = 0;
        pack.Finished = false;
        pack.InUse = 1;
        _packIndex = index;
        _packCapacity = (int)raw.Length;
        // SAFETY: the record was validated (the pack lies inside the data area, which is mapped until Dispose, and its
        // capacity covers the header line). Written before the record was published (whose acquire we have made): read
        // once into our copy; any value is an id.
        _packFirstId = *(ulong*)(_data + raw.BufferOffset + PackLayout.FirstIdOffset);
        _packIdStep = PackLayout.IdStep(_packFirstId);
        _packSeen = 0;
        _packEntries = 0;
        // Entries start after the header line; consumed counts from the pack's first byte.
        _packConsumed = PackLayout.HeaderSize;
        _packsReceived++;
        _packTrailLooks = 0;
        _packCatchUps = 0;
        // Last: a waiter that sees the offset reads the pack's word (a hint) with the fields above set.
        Volatile.Write(ref _packOffset, (long)raw.BufferOffset);
    }

    /// <summary>
    /// Takes the current pack's committed entries into <paramref name="records"/>; finishes the pack when it is sealed
    /// and consumed.
    /// </summary>
    /// <returns><see langword="true"/> if the pack is finished (the batch goes on with the ring); <see langword="false"/>
    /// if the batch ends here: it is full, the message cap is reached, the writer has not sealed the pack yet and
    /// nothing later is published, or (with messages already in the batch) the pack's word or an entry is bad, which
    /// the next call (with nothing taken yet) throws.</returns>
    /// <exception cref="ProtocolViolationException">With nothing taken yet in this batch: the pack's Committed word or
    /// an entry is invalid, or a later record is published while the pack is not sealed.</exception>
    private bool TakePackEntries(Span<TransactionRecord> records, ref int count, ref bool advanced, ref long highWaterMark)
    {
        while (true)
        {
            // SAFETY: the pack's record was validated (its offset and capacity lie inside the data area, 8-aligned),
            // and the data area is mapped until Dispose, which takes the receive lock we hold. Acquire: pairs with the
            // writer's release store of Committed, so the entries it covers are visible. The peer may change the word
            // at any time: it is loaded once into a local and only the local is used.
            uint word = Volatile.Read(ref *(uint*)(_data + _packOffset));
            // Under the receive lock: a plain increment. Messages per look tell how close behind the writer a stream's
            // receiver reads (the dump; benchmarks/README.md, "The oneway stream's receiver looks less often").
            _packLooks++;
            uint bytes = word & PackLayout.CommittedMask;
            bool sealed_ = (word & PackLayout.SealedBit) != 0;
            uint seenBytes = _packSeen & PackLayout.CommittedMask;
            // Never 0: an honest writer commits a pack's first entry before it publishes the pack's record, whose acquire
            // made it visible. An empty pack would be the one record that hands out nothing, so a peer publishing empty
            // sealed packs as fast as we finish them (each finish stores our head) kept one batch going for ever, with
            // the receive lock and the reader role held (found by review).
            if (bytes == 0
                || bytes > (uint)(_packCapacity - PackLayout.HeaderSize)
                || (bytes & 7) != 0
                || bytes < seenBytes
                || ((_packSeen & PackLayout.SealedBit) != 0 && word != _packSeen))
            {
                return PackViolation(count, $"its Committed word is 0x{word:x8} (capacity {_packCapacity} bytes, a {PackLayout.HeaderSize}-byte header, " +
                    $"an entry at least, a multiple of 8, never below the 0x{_packSeen:x8} seen before, never changing once sealed)");
            }
            _packSeen = word;
            int end = PackLayout.HeaderSize + (int)bytes;
            while (_packConsumed < end)
            {
                if (count == records.Length || PackedLiveAtMost + _packPending >= MaxPackedLive)
                {
                    return false;
                }
                if (_packEntries == PackLayout.MaxEntries)
                {
                    return PackViolation(count, $"it holds more than {PackLayout.MaxEntries} entries");
                }
                int left = end - _packConsumed;
                // Both multiples of 8 (Committed checked above, entries padded): an entry header always fits.
                Debug.Assert(left >= PackLayout.EntryHeaderSize, "Committed and every entry are multiples of 8 bytes.");
                // SAFETY: [_packConsumed, _packConsumed + 8) lies inside the committed bytes, inside the pack (checked
                // above), inside the mapped data area; copied once, and only the copy is used.
                PackEntryLayout entry = *(PackEntryLayout*)(_data + _packOffset + _packConsumed);
                bool longForm = entry.Form == PackLayout.LongForm;
                int entrySize = PackLayout.EntrySize(entry.Length, longForm);
                if (entry.Length > PackLayout.MaxPayload || entry.Form > PackLayout.LongForm || entrySize > left)
                {
                    return PackViolation(count, $"the entry at {_packConsumed} has length {entry.Length} and form {entry.Form} (at most " +
                        $"{PackLayout.MaxPayload}, form 0 or 1, inside the {bytes} committed bytes with its header and padding)");
                }
                // SAFETY: a long entry's id lies at [8, 16) of the entry, inside the committed bytes (entrySize <= left);
                // read once into a local. A short entry's follows from the pack's FirstId.
                ulong id = longForm
                    ? *(ulong*)(_data + _packOffset + _packConsumed + PackLayout.EntryHeaderSize)
                    : unchecked(_packFirstId + ((ulong)_packEntries * _packIdStep));
                long payloadOffset = _packOffset + _packConsumed + (longForm ? PackLayout.LongEntryHeaderSize : PackLayout.EntryHeaderSize);
                records[count++] = new TransactionRecord(id, payloadOffset, entry.Length, entry.Code, TransactionFlags.Oneway,
                    Pack: _packIndex + 1);
                _packConsumed += entrySize;
                _packEntries++;
                _packPending++;
                _packedSinceDrain = true;
                TransportMetrics.OnReceived(TransactionFlags.Oneway, entry.Length);
                highWaterMark = Math.Max(highWaterMark, payloadOffset + entry.Length);
            }
            if (sealed_)
            {
                // A stream's turnover (the seal names the next pack) in whose pack the receiver caught up with the writer
                // only a few times: it keeps up, so its waits trail the next pack instead of reading it as it is written.
                bool turnover = PrefetchNextPack();
                if (_packTrail)
                {
                    _packsTrailed++;
                }
                _packTrail = _trailsStreams && turnover && _packCatchUps <= StreamTrailMaxCatchUps
                    && _packCatchUps * StreamTrailMinMessagesPerCatchUp <= _packEntries;
                FinishPack(advanced);
                return true;
            }
            // Every committed entry taken, not sealed: an honest writer seals before it publishes anything later, so
            // with a later record on the ring the word (loaded again after the tail, whose acquire makes the seal
            // visible) must say sealed by now. Without this check a writer could make us spin on the pack for nothing.
            // A direct reply or call counts as a later record (DirectReplyLayout, DirectCallLayout): the writer seals first
            // there too.
            if (count == records.Length || (!_txRing.TryPeek(out _) && !DirectReplyArrived && !DirectCallPublished))
            {
                if (_packConsumed == end)
                {
                    // Caught up with the writer inside the pack: how often decides whether the next pack is trailed.
                    _packCatchUps++;
                }
                if (_packConsumed == end && _packedSinceDrain)
                {
                    // Everything committed taken, some of it now: the receiver's next looks while nothing comes start
                    // again (ReceiveMaybeReadyPaced: paced while the writer streams). A pass that finds nothing new
                    // leaves them as they were.
                    _packPollsSkipped = 0;
                    _packPollsSinceTake = 0;
                    _packedSinceDrain = false;
                }
                return false;
            }
            // SAFETY: as above.
            uint again = Volatile.Read(ref *(uint*)(_data + _packOffset));
            _packLooks++;
            if ((again & PackLayout.SealedBit) == 0)
            {
                return PackViolation(count, $"a later record (on the ring or in the direct lines) is published while it is not sealed (Committed 0x{again:x8})");
            }
            // Sealed now, perhaps with more entries: validate and take them as any.
        }
    }

    /// <summary>
    /// Asks for the first lines of the pack the sealed current one names (<see cref="PackLayout.NextPackHintOffset"/>): the
    /// writer wrote them before the seal, and without the hint they would come one after the other behind the ring's
    /// tail and the next record (each a line the other core wrote just before). A hint only: nothing is read from the
    /// next pack here, and its record is validated as any when the pass reaches it.
    /// </summary>
    /// <returns>Whether the seal names a next pack inside the data area: a stream's turnover (the trail follows it),
    /// whether or not this processor can prefetch.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool PrefetchNextPack()
    {
        // SAFETY: the current pack's record was validated (its header line lies inside the mapped data area, which stays
        // mapped while we hold the receive lock). The peer may write the hint at any time: loaded once into a local.
        ulong hint = Volatile.Read(ref *(ulong*)(_data + _packOffset + PackLayout.NextPackHintOffset));
        if (hint == 0)
        {
            // None: sealed by another record, an idle writer, or with no room for a next pack.
            return false;
        }
        ulong next = hint & ~7UL;
        // Clamped into the data area (a prefetch never faults, but a forged hint should not even fetch outside it).
        if ((hint & 1) == 0 || next > (ulong)(_layout.DataSize - PackLayout.NextPackPrefetchBytes))
        {
            _nextPackHintsRefused++;
            return false;
        }
        // Without the instruction, no prefetch; the answer (a stream's turnover, which the trail follows) is the same.
        if (System.Runtime.Intrinsics.X86.Sse.IsSupported)
        {
            for (int line = 0; line < PackLayout.NextPackPrefetchBytes; line += 64)
            {
                // SAFETY: inside the data area (checked above); a prefetch reads nothing into the program.
                System.Runtime.Intrinsics.X86.Sse.Prefetch0(_data + next + (uint)line);
            }
            _nextPackPrefetches++;
        }
        return true;
    }

    /// <summary>The writer paused inside a trailed pack: the receiver reads the pack's word again, from this look on.</summary>
    private void StopTrailing()
    {
        _packTrail = false;
        _trailsGivenUp++;
        // The looks that follow read at once: the pause may have left entries in the pack.
        _packPaced = false;
    }

    /// <summary>A bad pack word or entry: throws if nothing is in the batch yet, else ends the batch (the next call throws).</summary>
    private bool PackViolation(int count, string what)
    {
        if (count == 0)
        {
            throw new ProtocolViolationException(
                $"The peer's pack at offset {_packOffset} (capacity {_packCapacity}) is invalid: {what}.");
        }
        return false;
    }

    /// <summary>Adds the messages handed out from the current pack in this batch to its Taken and to <see cref="_packedTaken"/>.</summary>
    /// <remarks>Plain stores under the receive lock (their only writer): a free of one of these messages happens after
    /// they leave this batch, ordered after these stores by whatever handed the message over.</remarks>
    private void FlushPackPending()
    {
        if (_packPending != 0)
        {
            _packs[_packIndex].Taken += _packPending;
            Volatile.Write(ref _packedTaken, _packedTaken + _packPending);
            _packPending = 0;
        }
    }

    /// <summary>
    /// The current pack is sealed and consumed: marks it finished (its Taken is final), and frees it if every message
    /// taken from it was freed already; otherwise the free of its last live message does.
    /// </summary>
    /// <param name="headUnpublished">This batch consumed records whose head is not yet stored.</param>
    /// <remarks>One free lock round trip per pack (not per message): Finished and Freed are compared under it.</remarks>
    private void FinishPack(bool headUnpublished)
    {
        FlushPackPending();
        ref PackState pack = ref _packs[_packIndex];
        Volatile.Write(ref _packOffset, -1);
        // The free lock after the receive lock: the order Dispose takes them in; nobody takes them the other way.
        using (_freeLock.EnterScope())
        {
            pack.Finished = true;
            if (pack.Freed == pack.Taken)
            {
                // Binder's delivery rule: the writer honours the free only once the pack's record is below the head it
                // loads. A store of our own position (no lock): the receive lock we hold keeps other readers out.
                if (headUnpublished)
                {
                    _txRing.PublishHead();
                }
                WritePackFreeAndReleaseUnderLock(ref pack);
            }
        }
    }

    /// <summary>
    /// <see cref="ReceiveMaybeReady"/> for a look the receiver repeats while nothing comes: with a current pack whose
    /// committed entries were all taken, while the writer streams, its Committed word is read once in
    /// <see cref="PackPollInterval"/> looks (the others answer no), and at every look from one that found something
    /// until a pass takes everything again.
    /// </summary>
    private bool ReceiveMaybeReadyPaced
    {
        get
        {
            if (Volatile.Read(ref _packOffset) < 0 || _options.WaitStrategy == WaitStrategy.Park)
            {
                // No pack, or a receiver that does not poll (a look left out would only send it through its wait loop
                // to the park's exact look): every look reads.
                return ReceiveMaybeReady;
            }
            if (_packTrail)
            {
                // Trailing: only a later record (the seal) is news to a waiter; the pack's word is not read while the
                // writer streams. With news, the exact look decides: it answers no at the cap on packed messages (a pass
                // could take nothing, and a waiter answered yes would loop through passes until a message is freed;
                // found by review).
                if (_txRing.HasData || DirectReplyArrived || DirectCallPublished)
                {
                    return ReceiveMaybeReady;
                }
                if (++_packTrailLooks < StreamTrailLooks)
                {
                    return false;
                }
                StopTrailing();
            }
            // Plain counts, from the receiving thread in practice (the reader role's, a reading reference's): hints under
            // races, as the look itself is.
            _packWaitPolls++;
            if (_packPollsSinceTake < int.MaxValue)
            {
                _packPollsSinceTake++;
            }
            if (_packPaced && _packPollsSkipped < PackPollInterval - 1)
            {
                _packPollsSkipped++;
                return false;
            }
            _packWaitLooks++;
            bool ready = ReceiveMaybeReady;
            if (ready)
            {
                // More came within a few looks of the last take: a stream, whose writer stores the word again and
                // again (paced from now on). After a long wait: a writer that sends now and then, whose next message
                // should be seen at once (unpaced).
                _packPaced = _packPollsSinceTake <= PackStreamPolls;
            }
            else
            {
                // Nothing new: the next looks are left out again. Something: every look is made until a pass takes it
                // all (TakePackEntries starts the count again); a wait that ends ready on an exact look says so too
                // (ReadAtNextPacedLook), so the pass that follows a wait is not turned away.
                _packPollsSkipped = 0;
            }
            return ready;
        }
    }

    /// <summary>
    /// Whether a receive would make progress: with no current pack, whether the ring has a record; with one, whether
    /// it has entries to take and the message cap leaves room, or (every committed entry taken) whether its word changed
    /// (the seal) or a later record is on the ring (which finishes the pack, or proves it a violation). A hint for
    /// waiters, read with no lock (the pack's word lies in the data area, mapped while the waiter holds its reference).
    /// </summary>
    /// <remarks>
    /// While a pack is current the ring's later records wait for it, so they alone do not make a waiter return: at the
    /// message cap that would be a busy loop until a message is freed (whose release of the next oneway nudges us).
    /// </remarks>
    private bool ReceiveMaybeReady
    {
        get
        {
            long offset = Volatile.Read(ref _packOffset);
            if (offset < 0)
            {
                // A direct reply or call counts as the ring's next record (DirectReplyLayout, DirectCallLayout): it waits
                // behind a current pack as they do.
                return _txRing.HasData || DirectReplyArrived || DirectCallPublished;
            }
            // SAFETY: offset is a validated pack offset inside the data area (set only after validation); the data
            // area stays mapped while the waiter holds its reference on the region. A torn or stale view costs one
            // early return or one wake, as any hint.
            uint word = Volatile.Read(ref *(uint*)(_data + offset));
            if ((int)(word & PackLayout.CommittedMask) + PackLayout.HeaderSize != _packConsumed)
            {
                return PackedLiveAtMost < MaxPackedLive;
            }
            return word != _packSeen || _txRing.HasData || DirectReplyArrived || DirectCallPublished;
        }
    }

    /// <summary>Turns a private copy of a record into a <see cref="TransactionRecord"/>, if it is valid.</summary>
    private bool TryValidate(in TransactionRecordLayout raw, out TransactionRecord record)
    {
        ulong dataSize = (ulong)_layout.DataSize;
        TransactionFlags direct = DirectRequestOf(raw);
        TransactionFlags flags = (TransactionFlags)raw.Flags & ~direct;
        // Each check reads only the private copy. Length <= dataSize - offset after offset <= dataSize cannot overflow.
        // A status only on an error reply, a chain only on a two-way call: anything else is a peer that does not speak
        // this version, and trusting half of its record would be worse than closing.
        if (raw.BufferOffset > dataSize
            || raw.Length > dataSize - raw.BufferOffset
            || (raw.BufferOffset & 7) != 0
            || !flags.IsValid()
            || !HasValidContext(raw, flags)
            || raw.MetadataLength > raw.Length
            || raw.MetadataLength > CallMetadataBlock.MaxLength
            || (raw.MetadataLength & 7) != 0
            || (raw.MetadataLength != 0 && (flags & (TransactionFlags.TwoWay | TransactionFlags.Oneway)) == 0)
            || raw.Reserved0 != 0
            || raw.Reserved1 != 0
            || (direct != 0 && (flags & TransactionFlags.TwoWay) == 0))
        {
            record = default;
            return false;
        }
        record = new TransactionRecord(raw.TransactionId, (long)raw.BufferOffset, (int)raw.Length, raw.Code, flags | direct,
            new ReceivedContext(raw.ChainId, raw.Depth, (CallStatus)raw.Status), (int)raw.MetadataLength);
        return true;
    }

    /// <summary>
    /// The record's status, chain and depth (from the caller's private copy), as every kind of record has them: a status
    /// only on an error reply and at most <see cref="TransactionRecordLayout.MaxStatus"/>, a chain only on a two-way
    /// call, a depth within <see cref="TransactionRecordLayout.MaxDepth"/>. Shared by buffer and inline records.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static bool HasValidContext(in TransactionRecordLayout raw, TransactionFlags flags) =>
        raw.Status <= TransactionRecordLayout.MaxStatus
        && (raw.Status == 0 || (flags & TransactionFlags.ErrorReply) != 0)
        && raw.Depth <= TransactionRecordLayout.MaxDepth
        && ((flags & TransactionFlags.TwoWay) != 0 || (raw.ChainId == 0 && raw.Depth == 0));

    // Inlined: every payload access makes this check (a record's copy in a slot is ours, but the check costs a few
    // compares, and a call per access showed in a stream's profile).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void CheckPayloadInDataArea(long payloadOffset, int payloadLength)
    {
        if (payloadOffset < 0 || payloadLength < 0 || payloadOffset > _layout.DataSize - payloadLength)
        {
            ThrowHelper.ThrowOutOfRange(payloadOffset, payloadLength, _layout.DataSize);
        }
    }

    // Inlined too: the payload copy, the metadata block and the channel's own tests check a whole record.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void CheckInDataArea(in TransactionRecord record)
    {
        if (record.Offset < 0 || record.Length < 0 || record.Offset > _layout.DataSize - record.Length
            || record.MetadataLength < 0 || record.MetadataLength > record.Length)
        {
            ThrowHelper.ThrowOutOfRange(record.Offset, record.Length, _layout.DataSize);
        }
    }

    [DoesNotReturn]
    private static void ThrowBadRecord(in TransactionRecordLayout raw, long dataSize) =>
        throw new ProtocolViolationException(
            $"The peer published an invalid transaction record: id {raw.TransactionId}, offset {raw.BufferOffset}, length {raw.Length}, " +
            $"code {raw.Code}, flags 0x{raw.Flags:x}, status {raw.Status}, chain {raw.ChainId} depth {raw.Depth}, metadata {raw.MetadataLength}, " +
            $"reserved {raw.Reserved0}/{raw.Reserved1} (data area {dataSize} bytes, offsets 8-byte aligned, exactly one of " +
            $"Oneway/TwoWay/Reply/ErrorReply, a status up to {TransactionRecordLayout.MaxStatus} only on ErrorReply, a chain only on " +
            $"TwoWay, depth up to {TransactionRecordLayout.MaxDepth}, metadata only on TwoWay/Oneway, within the length, a multiple of 8 " +
            $"and at most {CallMetadataBlock.MaxLength} bytes, reserved words zero).");

    [DoesNotReturn]
    private static void ThrowBadDirectCall(in TransactionRecordLayout raw, ulong taken, ulong head) =>
        throw new ProtocolViolationException(
            $"The peer wrote an invalid direct call: sequence {raw.Reserved0} after {taken}, ring position {raw.Reserved1} (head {head}), " +
            $"id {raw.TransactionId}, offset {raw.BufferOffset}, length {raw.Length}, code {raw.Code}, flags 0x{raw.Flags:x}, status {raw.Status}, " +
            $"chain {raw.ChainId} depth {raw.Depth}, metadata {raw.MetadataLength} (a direct call is sequence {taken + 1}, at a ring position " +
            $"already published, exactly TwoWay (and the direct reply's request bit), offset 0, at most {DirectCallLayout.MaxPayload} bytes, " +
            $"no metadata, no status, a depth up to {TransactionRecordLayout.MaxDepth}).");

    [DoesNotReturn]
    private static void ThrowBadDirectReply(in TransactionRecordLayout raw, ulong head) =>
        throw new ProtocolViolationException(
            $"The peer wrote an invalid direct reply: id {raw.TransactionId}, ring position {raw.Reserved1} (head {head}), offset {raw.BufferOffset}, " +
            $"length {raw.Length}, code {raw.Code}, flags 0x{raw.Flags:x}, status {raw.Status}, chain {raw.ChainId} depth {raw.Depth}, " +
            $"metadata {raw.MetadataLength}, reserved0 {raw.Reserved0} (a direct reply is exactly Reply or ErrorReply, at a ring position " +
            $"already published, offset 0, at most {DirectReplyLayout.MaxPayload} bytes, no metadata, no chain, a status up to " +
            $"{TransactionRecordLayout.MaxStatus} only on ErrorReply, reserved0 zero).");

    [DoesNotReturn]
    private static void ThrowBadInlineRecord(in TransactionRecordLayout raw) =>
        throw new ProtocolViolationException(
            $"The peer published an invalid inline record: id {raw.TransactionId}, offset {raw.BufferOffset}, length {raw.Length}, " +
            $"code {raw.Code}, flags 0x{raw.Flags:x}, status {raw.Status}, chain {raw.ChainId} depth {raw.Depth}, metadata {raw.MetadataLength}, " +
            $"reserved {raw.Reserved0}/{raw.Reserved1} (an inline record is exactly one of TwoWay/Reply/ErrorReply plus the inline bit, " +
            $"offset 0, at most {InlineLayout.MaxPayload} bytes, no metadata, a status up to {TransactionRecordLayout.MaxStatus} only on " +
            $"ErrorReply, a chain only on TwoWay, reserved words zero, and its payload published in the ring slots after it with it).");

    [DoesNotReturn]
    private static void ThrowBadPackRecord(in TransactionRecordLayout raw, long dataSize) =>
        throw new ProtocolViolationException(
            $"The peer published an invalid pack record: offset {raw.BufferOffset}, capacity {raw.Length}, id {raw.TransactionId}, code {raw.Code}, " +
            $"flags 0x{raw.Flags:x}, status {raw.Status}, chain {raw.ChainId} depth {raw.Depth}, metadata {raw.MetadataLength}, " +
            $"reserved {raw.Reserved0}/{raw.Reserved1} (data area {dataSize} bytes; a pack record is exactly Oneway plus the pack bit, " +
            $"8-aligned inside the data area, a capacity of {PackLayout.MinCapacity}..{PackLayout.MaxCapacity} bytes and a multiple of 8, every other field zero).");

    [DoesNotReturn]
    private void ThrowFreeRingFull() =>
        throw new ProtocolViolationException(
            $"The free ring ({_freeRing.Capacity} slots) is full: the writer kept more buffers live than it may, " +
            "or a buffer was freed twice.");

    /// <summary>Ready when a transaction is published or the channel is disposed.</summary>
    private readonly struct TransactionReady(InboundChannel channel) : IWaitCondition
    {
        public readonly bool IsReady => Flagged || channel.ReceiveMaybeReady;

        /// <summary>As <see cref="IsReady"/>, but a current pack's Committed word is looked at only now and then (<see cref="ReceiveMaybeReadyPaced"/>).</summary>
        public readonly bool PollReady() => Flagged || channel.ReceiveMaybeReadyPaced;

        private readonly bool Flagged =>
            Volatile.Read(ref channel._disposed) != 0 || Volatile.Read(ref channel._released) != 0 || Volatile.Read(ref channel._nudged) != 0;
    }

    /// <summary>One pack owed a free: its offset and its messages' counts (see <see cref="_packs"/>).</summary>
    private struct PackState
    {
        internal long Offset;
        // Messages taken from it: written under the receive lock while it is current, read under the free lock once Finished.
        internal int Taken;
        // Messages freed: under the free lock.
        internal int Freed;
        // Sealed and consumed, Taken final: set under the free lock.
        internal bool Finished;
        // 1 while the pack is owed its free: set by OpenPack, cleared (release) under the free lock by its free's writer.
        internal int InUse;
    }
}
