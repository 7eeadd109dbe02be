namespace PageRange.Transport;

/// <summary>
/// One delivered transaction: an incoming call or oneway message, or the reply to a call of ours. Its payload is read
/// in place from our receive region; <see cref="Dispose"/> frees the buffer (binder's <c>BC_FREE_BUFFER</c>).
/// </summary>
/// <remarks>
/// A small handle: copies refer to the same transaction, and every member of a copy fails with
/// <see cref="ObjectDisposedException"/> once any copy was disposed. The payload is valid until then.
/// Dispose every transaction you receive, also the replies <see cref="PageRangeConnection.Call(uint, ReadOnlySpan{byte}, TimeSpan?, CancellationToken)"/>
/// returns: the buffer stays allocated in the peer's bookkeeping until you do. Disposing a two-way call without
/// replying sends the caller an error reply so that it never waits in vain.
/// </remarks>
public readonly struct Transaction : IDisposable, IEquatable<Transaction>
{
    private readonly PageRangeConnection? _connection;
    private readonly IncomingSlot? _slot;
    private readonly int _generation;

    internal Transaction(PageRangeConnection connection, IncomingSlot slot, int generation)
    {
        _connection = connection;
        _slot = slot;
        _generation = generation;
    }

    /// <summary>The method or opcode the sender chose (binder's <c>code</c>).</summary>
    public uint Code
    {
        get
        {
            IncomingSlot slot = ReadSlot;
            uint code = slot.Record.Code;
            EndRead(slot);
            return code;
        }
    }

    /// <summary>How the transaction was sent.</summary>
    public TransactionFlags Flags
    {
        get
        {
            IncomingSlot slot = ReadSlot;
            TransactionFlags flags = slot.Record.Flags & ~TransactionFlagsExtensions.DirectReplyRequested;
            EndRead(slot);
            return flags;
        }
    }

    /// <summary>The transaction id; a reply carries the id of the call it answers.</summary>
    public ulong Id
    {
        get
        {
            IncomingSlot slot = ReadSlot;
            ulong id = slot.Record.TransactionId;
            EndRead(slot);
            return id;
        }
    }

    /// <summary>Whether the sender expects no reply.</summary>
    public bool IsOneway => (Flags & TransactionFlags.Oneway) != 0;

    /// <summary>Whether this is a call that expects a reply (and none was sent yet or later).</summary>
    public bool IsTwoWay => (Flags & TransactionFlags.TwoWay) != 0;

    /// <summary>The payload, in place in the receive region. Valid until the transaction is disposed.</summary>
    /// <remarks>
    /// The bytes are the peer's: read in place, they lie in shared memory the sender can still write, so a sender
    /// that changes a published payload while it is read can make two reads of one field disagree. Read each value
    /// once (as the deserializers do), or set <see cref="PageRangeOptions.CopyIncomingPayloads"/> so that every payload
    /// is copied once into private pooled memory before anyone sees it (the default for peers of another uid).
    /// </remarks>
    public ReadOnlySpan<byte> Payload
    {
        get
        {
            // Just the fields the span needs, as a seqlock reader (EndRead), not the whole record: a stream's handler
            // reads this per message.
            IncomingSlot slot = ReadSlot;
            long offset = slot.Record.PayloadOffset;
            int length = slot.Record.PayloadLength;
            byte[]? copy = slot.PrivatePayload;
            EndRead(slot);
            return _connection!.GetPayload(offset, length, copy);
        }
    }

    /// <summary>The payload as memory, in place in the receive region. Valid until the transaction is disposed.</summary>
    /// <remarks>The same bytes as <see cref="Payload"/>, with the same caveat: see there.</remarks>
    public ReadOnlyMemory<byte> Memory
    {
        get
        {
            IncomingSlot slot = ReadSlot;
            long offset = slot.Record.PayloadOffset;
            int length = slot.Record.PayloadLength;
            byte[]? copy = slot.PrivatePayload;
            EndRead(slot);
            return _connection!.GetPayloadMemory(offset, length, copy);
        }
    }

    /// <summary>The payload's length in bytes (the metadata block not counted).</summary>
    public int Length
    {
        get
        {
            IncomingSlot slot = ReadSlot;
            int length = slot.Record.PayloadLength;
            EndRead(slot);
            return length;
        }
    }

    /// <summary>The caller's deadline (<see cref="PageRangeCallOptions.Deadline"/>), UTC; <c>null</c> when it set none.</summary>
    /// <remarks>Advice from the peer: after it, the caller no longer waits for the reply. The clocks agree (one machine).</remarks>
    public DateTimeOffset? Deadline => ParsedMetadata?.Deadline;

    /// <summary>The caller's key/values (<see cref="PageRangeCallOptions.Metadata"/>), in the order sent; empty when none.</summary>
    /// <remarks>Copied and validated on receipt (bounded, printable ASCII keys, valid UTF-8 values); still peer text.</remarks>
    public IReadOnlyList<KeyValuePair<string, string>> Metadata => ParsedMetadata?.Pairs ?? [];

    /// <summary>The caller's W3C trace context; <c>default</c> when it carried none.</summary>
    internal System.Diagnostics.ActivityContext TraceContext => ParsedMetadata?.TraceContext ?? default;

    /// <summary>Cancelled when the caller of this two-way call cancels it or gives up waiting.</summary>
    public CancellationToken CallCancelled => _connection!.GetCallCancellationToken(Slot, _generation);

    /// <summary>Sends <paramref name="payload"/> as the reply to this call, into the caller's region.</summary>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full for the configured timeout.</exception>
    /// <exception cref="MessageTooLargeException">The reply can never fit the caller's region.</exception>
    public void Reply(ReadOnlySpan<byte> payload) => _connection!.SendReply(Slot, payload, CallStatus.Ok);

    /// <summary>
    /// Sends <paramref name="payload"/> as the reply to this call, waiting asynchronously (no thread blocked) while the
    /// caller's region is full.
    /// </summary>
    /// <param name="payload">The reply's bytes; not used after the returned task completes.</param>
    /// <param name="cancellationToken">Cancels waiting for room; nothing is sent then, and the call can still be answered.</param>
    /// <returns>Completes once the reply is published.</returns>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full for the configured timeout.</exception>
    /// <exception cref="MessageTooLargeException">The reply can never fit the caller's region.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled before the reply could be placed.</exception>
    public ValueTask ReplyAsync(ReadOnlyMemory<byte> payload, CancellationToken cancellationToken = default) =>
        _connection!.SendReplyAsync(Slot, payload, CallStatus.Ok, cancellationToken);

    /// <summary>
    /// Fails this call with <paramref name="status"/> and <paramref name="message"/>: the caller's <c>Call</c> throws
    /// <see cref="RemoteCallException"/> with both.
    /// </summary>
    /// <param name="status">Why the call failed; not <see cref="CallStatus.Ok"/>.</param>
    /// <param name="message">What the caller reads; bounded to 512 characters and stripped of control characters
    /// before it is sent (UTF-8).</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="status"/> is <see cref="CallStatus.Ok"/> or not defined.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is null.</exception>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full for the configured timeout.</exception>
    public void ReplyError(CallStatus status, string message)
    {
        ValidateErrorStatus(status);
        ArgumentNullException.ThrowIfNull(message);
        string text = PeerText.Sanitize(message);
        // At most 513 characters after sanitizing, so at most about 1.5 KiB of UTF-8: the stack holds it.
        Span<byte> utf8 = stackalloc byte[System.Text.Encoding.UTF8.GetMaxByteCount(PeerText.MaxLength + 1)];
        int length = System.Text.Encoding.UTF8.GetBytes(text, utf8);
        _connection!.SendReply(Slot, utf8[..length], status);
    }

    /// <summary>
    /// The chain a call made on behalf of this one belongs to: this call's chain, one level deeper. Pass it to
    /// <see cref="PageRangeConnection.Call(uint, ReadOnlySpan{byte}, CallChain, TimeSpan?, CancellationToken)"/> so the
    /// peer's thread waiting for this call's reply runs the nested call (binder's transaction stack).
    /// </summary>
    /// <remarks><c>default</c> (a new chain) for a oneway message or a reply: they belong to no chain.</remarks>
    public CallChain NestedChain
    {
        get
        {
            TransactionRecord record = Record;
            return (record.Flags & TransactionFlags.TwoWay) != 0
                ? new CallChain(record.Context.ChainId, record.Context.Depth + 1)
                : default;
        }
    }

    /// <summary>The chain this two-way call belongs to; 0 for other transactions.</summary>
    internal ulong ChainId => Record.Context.ChainId;

    /// <summary>How deep in its chain this two-way call is; 0 for the call that started it and for other transactions.</summary>
    internal int Depth => (int)Record.Context.Depth;

    /// <summary>
    /// Reserves the reply to this call in the caller's region, to write it in place and publish it with
    /// <see cref="ReservedBuffer.CommitReply"/> (zero-copy).
    /// </summary>
    /// <param name="maxSize">The most bytes the reply will have.</param>
    /// <param name="cancellationToken">Cancels waiting for room.</param>
    /// <remarks>The call counts as replied to from now on; disposing the reservation uncommitted undoes that, so
    /// disposing the call still sends the caller an error reply.</remarks>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full for the configured timeout.</exception>
    /// <exception cref="MessageTooLargeException">The reply can never fit the caller's region.</exception>
    public ReservedBuffer ReserveReply(int maxSize, CancellationToken cancellationToken = default) =>
        _connection!.ReserveReply(Slot, _generation, maxSize, cancellationToken);

    /// <summary>Frees the transaction's buffer; the second and later calls do nothing.</summary>
    public void Dispose()
    {
        if (_slot is not null)
        {
            _connection!.Release(_slot, _generation);
        }
    }

    /// <summary>Whether this transaction is still live (not yet disposed).</summary>
    public bool IsLive => _slot is not null && Volatile.Read(ref _slot.Generation) == _generation;

    /// <inheritdoc/>
    public bool Equals(Transaction other) => ReferenceEquals(_slot, other._slot) && _generation == other._generation;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Transaction other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_slot, _generation);

    /// <summary>Compares two transaction handles.</summary>
    public static bool operator ==(Transaction left, Transaction right) => left.Equals(right);

    /// <summary>Compares two transaction handles.</summary>
    public static bool operator !=(Transaction left, Transaction right) => !left.Equals(right);

    /// <summary>An error reply's status: a defined one, not <see cref="CallStatus.Ok"/>.</summary>
    internal static void ValidateErrorStatus(CallStatus status)
    {
        if (status == CallStatus.Ok || !Enum.IsDefined(status))
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "An error reply needs a defined status other than Ok.");
        }
    }

    /// <summary>The slot generation this handle refers to.</summary>
    internal int Generation => _generation;

    /// <summary>The connection the transaction arrived on.</summary>
    internal PageRangeConnection Connection => _connection ?? throw new ObjectDisposedException(nameof(Transaction));

    /// <summary>This transaction's record, copied once from its slot and checked to be this generation's after the copy.</summary>
    private TransactionRecord Record => ReadRecord(out _, out _);

    /// <summary>
    /// The record (and private payload copy and parsed metadata, if any) of this transaction, read as a seqlock reader
    /// reads: the fields copied, then the generation checked (<see cref="EndRead"/>). A stale copy of the handle on
    /// another thread, racing the slot's reuse (a lane's next oneway reuses its slot within nanoseconds), then fails with
    /// <see cref="ObjectDisposedException"/> instead of returning a later transaction's fields or a mix of two.
    /// </summary>
    private TransactionRecord ReadRecord(out byte[]? copy, out CallMetadata? metadata)
    {
        IncomingSlot slot = ReadSlot;
        TransactionRecord record = slot.Record;
        copy = slot.PrivatePayload;
        metadata = slot.Metadata;
        EndRead(slot);
        return record;
    }

    /// <summary>
    /// A seqlock reader's check: the fields just copied from <paramref name="slot"/> are this transaction's if the
    /// generation is still this handle's after the copies. One look suffices (none before the copies): the slot's writer
    /// ends a generation (a store) before it stores the next transaction's fields, and the generation is loaded after the
    /// copies, so a copy that saw any later field sees the end too. A handle made before this generation never matches.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private void EndRead(IncomingSlot slot)
    {
        if (!MemoryStaysInOrder)
        {
            // Elsewhere loads may pass loads: the copies must be done before the generation is read again.
            Interlocked.MemoryBarrier();
        }
        if (Volatile.Read(ref slot.Generation) != _generation)
        {
            ThrowHelper.ThrowObjectDisposed(this);
        }
    }

    /// <summary>This transaction's parsed metadata (null: none), read with its record (<see cref="ReadRecord"/>).</summary>
    private CallMetadata? ParsedMetadata
    {
        get
        {
            ReadRecord(out _, out CallMetadata? metadata);
            return metadata;
        }
    }

    // x86-64 does not reorder loads with loads nor stores with stores, and the JIT does not move a load past a volatile
    // one: a seqlock's reader and writer need no fence there. Elsewhere they take one.
    internal static readonly bool MemoryStaysInOrder =
        System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64;

    /// <summary>
    /// The slot to copy fields from, for <see cref="EndRead"/> to confirm: on x64 its generation is checked once, after
    /// the copies (in order with them: a later transaction's fields are stored only after this one's end). Elsewhere it is
    /// also checked before them, with acquire: loads may pass loads there, so a handle that reached this thread without a
    /// barrier (a race in the caller's code) could otherwise copy an older use of the slot and pass the check after.
    /// </summary>
    private IncomingSlot ReadSlot
    {
        get
        {
            IncomingSlot? slot = _slot;
            if (slot is null || (!MemoryStaysInOrder && Volatile.Read(ref slot.Generation) != _generation))
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }
            return slot;
        }
    }

    internal IncomingSlot Slot
    {
        get
        {
            IncomingSlot? slot = _slot;
            if (slot is null || Volatile.Read(ref slot.Generation) != _generation)
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }
            return slot;
        }
    }
}
