using System.Buffers;

namespace PageRange.Transport;

/// <summary>
/// A buffer reserved in the peer's region for a zero-copy send: write the payload straight into the receiver's memory
/// (through <see cref="Span"/>, or as an <see cref="IBufferWriter{T}"/>), then commit it, which publishes it without
/// copying. From <see cref="PageRangeConnection.Reserve"/> or <see cref="Transaction.ReserveReply"/>.
/// </summary>
/// <remarks>
/// <para>
/// Commit exactly once, with the method that matches how it was reserved: <see cref="CommitOneway"/> for a oneway
/// reservation, <see cref="CommitCall"/> or <see cref="CommitCallAsync"/> for a two-way one, <see cref="CommitReply"/> for
/// a reply. The payload is the first <c>length</c> bytes; <c>length</c> defaults to <see cref="WrittenCount"/>.
/// Disposing a reservation that was not committed gives the buffer back (abort); disposing after a commit does nothing,
/// so <c>using</c> is the safe pattern. A commit that fails for any reason other than a bad argument also ends the
/// reservation.
/// </para>
/// <para>
/// The buffer holds region space and a live-buffer slot until it is committed or aborted, and the receiver sees nothing
/// before the commit. Spans and memory handed out are valid until then. Not thread-safe: one thread at a time writes and
/// commits. A small handle: copies refer to the same reservation, and every member of a copy throws
/// <see cref="ObjectDisposedException"/> once the reservation ended.
/// </para>
/// </remarks>
public readonly struct ReservedBuffer : IBufferWriter<byte>, IDisposable, IEquatable<ReservedBuffer>
{
    private readonly Reservation? _reservation;
    private readonly int _generation;

    internal ReservedBuffer(Reservation reservation)
    {
        _reservation = reservation;
        _generation = reservation.Generation;
    }

    /// <summary>How many bytes were reserved: the most the payload may have.</summary>
    public int MaxSize => Live.Buffer.MaxSize;

    /// <summary>How many bytes were written through <see cref="Advance"/>.</summary>
    public int WrittenCount => Live.Written;

    /// <summary>Whether the reservation still waits for a commit or an abort.</summary>
    public bool IsPending => _reservation is { } reservation && Volatile.Read(ref reservation.Generation) == _generation;

    /// <summary>The whole reserved buffer, <see cref="MaxSize"/> bytes in the peer's region, for callers that write at known offsets.</summary>
    /// <remarks>Its bytes are whatever the region held: not zeroed. Commit with an explicit length when writing through it.</remarks>
    public Span<byte> Span => Live.Span;

    /// <summary>Marks <paramref name="count"/> more bytes as written.</summary>
    /// <exception cref="ArgumentOutOfRangeException">That would go past <see cref="MaxSize"/>.</exception>
    public void Advance(int count) => Live.Advance(count);

    /// <summary>The rest of the buffer after the bytes written so far.</summary>
    /// <exception cref="InvalidOperationException">Fewer than <paramref name="sizeHint"/> bytes (at least one) are left.</exception>
    public Span<byte> GetSpan(int sizeHint = 0) => Live.GetSpan(sizeHint);

    /// <inheritdoc cref="GetSpan"/>
    public Memory<byte> GetMemory(int sizeHint = 0) => Live.GetMemory(sizeHint);

    /// <summary>Publishes a oneway reservation as a oneway message.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="length">The payload's length; defaults to <see cref="WrittenCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The length is negative or larger than <see cref="MaxSize"/>.</exception>
    /// <exception cref="InvalidOperationException">The buffer was reserved for a call or a reply.</exception>
    /// <exception cref="PeerDiedException">The peer is gone.</exception>
    public void CommitOneway(uint code, int? length = null) => Live.Connection.CommitOneway(Live, code, length);

    /// <summary>Publishes a two-way reservation as a call and waits on this thread for the reply.</summary>
    /// <param name="code">The method or opcode, for the receiver.</param>
    /// <param name="length">The payload's length; defaults to <see cref="WrittenCount"/>.</param>
    /// <param name="timeout">How long to wait for the reply; defaults to <see cref="PageRangeOptions.CallTimeout"/>.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The reply, read in place from our region. Dispose it.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The length is negative or larger than <see cref="MaxSize"/>, or the timeout is
    /// zero, negative (other than <see cref="Timeout.InfiniteTimeSpan"/>) or longer than about 49 days; nothing was sent and the
    /// buffer is still reserved.</exception>
    /// <exception cref="InvalidOperationException">The buffer was reserved for a oneway message or a reply.</exception>
    /// <exception cref="TimeoutException">No reply within the timeout.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="PeerDiedException">The peer is gone, or died before replying.</exception>
    /// <exception cref="RemoteCallException">The peer's handler failed or disposed the call without replying.</exception>
    public Transaction CommitCall(uint code, int? length = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Live.Connection.CommitCall(Live, code, length, timeout, cancellationToken);

    /// <summary>Publishes a two-way reservation as a call and completes when the reply arrives.</summary>
    /// <inheritdoc cref="CommitCall"/>
    public ValueTask<Transaction> CommitCallAsync(uint code, int? length = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        Live.Connection.CommitCallAsync(Live, code, length, timeout, cancellationToken);

    /// <summary>Publishes a reply reservation as the reply to its call.</summary>
    /// <param name="length">The payload's length; defaults to <see cref="WrittenCount"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The length is negative or larger than <see cref="MaxSize"/>.</exception>
    /// <exception cref="InvalidOperationException">The buffer was reserved for a oneway message or a call.</exception>
    /// <exception cref="PeerDiedException">The caller's process is gone.</exception>
    public void CommitReply(int? length = null) => Live.Connection.CommitReply(Live, length);

    /// <summary>Aborts the reservation if it was not committed: the buffer goes back to the peer's region unsent.</summary>
    public void Dispose()
    {
        if (IsPending)
        {
            _reservation!.Connection.AbortReservation(_reservation);
        }
    }

    /// <inheritdoc/>
    public bool Equals(ReservedBuffer other) => ReferenceEquals(_reservation, other._reservation) && _generation == other._generation;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is ReservedBuffer other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(_reservation, _generation);

    /// <summary>Compares two reservation handles.</summary>
    public static bool operator ==(ReservedBuffer left, ReservedBuffer right) => left.Equals(right);

    /// <summary>Compares two reservation handles.</summary>
    public static bool operator !=(ReservedBuffer left, ReservedBuffer right) => !left.Equals(right);

    /// <summary>The reservation behind this handle, for typed sends that serialize into it without boxing the handle.</summary>
    internal Reservation Reservation => Live;

    private Reservation Live
    {
        get
        {
            Reservation? reservation = _reservation;
            if (reservation is null || Volatile.Read(ref reservation.Generation) != _generation)
            {
                ThrowHelper.ThrowObjectDisposed(this);
            }
            return reservation;
        }
    }
}
