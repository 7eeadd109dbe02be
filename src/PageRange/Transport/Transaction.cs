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
    public uint Code => Slot.Record.Code;

    /// <summary>How the transaction was sent.</summary>
    public TransactionFlags Flags => Slot.Record.Flags;

    /// <summary>The transaction id; a reply carries the id of the call it answers.</summary>
    public ulong Id => Slot.Record.TransactionId;

    /// <summary>Whether the sender expects no reply.</summary>
    public bool IsOneway => (Flags & TransactionFlags.Oneway) != 0;

    /// <summary>Whether this is a call that expects a reply (and none was sent yet or later).</summary>
    public bool IsTwoWay => (Flags & TransactionFlags.TwoWay) != 0;

    /// <summary>The payload, in place in the receive region. Valid until the transaction is disposed.</summary>
    public ReadOnlySpan<byte> Payload
    {
        get
        {
            IncomingSlot slot = Slot;
            return _connection!.GetPayload(slot.Record);
        }
    }

    /// <summary>The payload as memory, in place in the receive region. Valid until the transaction is disposed.</summary>
    public ReadOnlyMemory<byte> Memory
    {
        get
        {
            IncomingSlot slot = Slot;
            return _connection!.GetPayloadMemory(slot.Record);
        }
    }

    /// <summary>The payload's length in bytes.</summary>
    public int Length => Slot.Record.Length;

    /// <summary>Cancelled when the caller of this two-way call cancels it or gives up waiting.</summary>
    public CancellationToken CallCancelled => _connection!.GetCallCancellationToken(Slot);

    /// <summary>Sends <paramref name="payload"/> as the reply to this call, into the caller's region.</summary>
    /// <exception cref="InvalidOperationException">This is not a two-way call, or it was already replied to.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    /// <exception cref="RegionFullException">The caller's region stayed full for the configured timeout.</exception>
    /// <exception cref="MessageTooLargeException">The reply can never fit the caller's region.</exception>
    public void Reply(ReadOnlySpan<byte> payload) => _connection!.SendReply(Slot, payload, isError: false);

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

    /// <summary>The connection the transaction arrived on.</summary>
    internal PageRangeConnection Connection => _connection ?? throw new ObjectDisposedException(nameof(Transaction));

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
