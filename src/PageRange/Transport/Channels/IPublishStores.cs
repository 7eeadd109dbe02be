namespace PageRange.Transport;

/// <summary>
/// The stores of one publish, which <see cref="RingProducer{TRecord}.TryPublish"/> makes in the order the consumer
/// relies on: payload, record, then a release store of the tail.
/// </summary>
/// <remarks>
/// An interface over a struct (or ref struct) so the production stores inline to plain writes, while a test can slip in
/// a fake that records the order of the stores.
/// </remarks>
/// <typeparam name="TRecord">The ring's record type.</typeparam>
internal interface IPublishStores<TRecord>
    where TRecord : unmanaged
{
    /// <summary>Writes the payload into its buffer; nothing when the caller already wrote it in place.</summary>
    void StorePayload();

    /// <summary>Writes <paramref name="record"/> into <paramref name="slot"/> with plain stores.</summary>
    void StoreRecord(ref TRecord slot, in TRecord record);

    /// <summary>Publishes: a release store of <paramref name="value"/> into the ring's <paramref name="tail"/>.</summary>
    void StoreTail(ref ulong tail, ulong value);
}

/// <summary>The production stores for a publish whose payload is already in place (or that has none).</summary>
/// <typeparam name="TRecord">The ring's record type.</typeparam>
internal readonly struct InPlaceStores<TRecord> : IPublishStores<TRecord>
    where TRecord : unmanaged
{
    /// <inheritdoc/>
    public void StorePayload()
    {
    }

    /// <inheritdoc/>
    public void StoreRecord(ref TRecord slot, in TRecord record) => slot = record;

    /// <inheritdoc/>
    public void StoreTail(ref ulong tail, ulong value) =>
        // Release: pairs with the acquire load of the tail in RingConsumer.LoadTail; the payload and the record
        // stored before this are visible to a consumer that sees the new tail.
        Volatile.Write(ref tail, value);
}

/// <summary>The production stores for a publish that copies its payload (after a metadata block, if any) into the buffer first.</summary>
/// <param name="prefix">The metadata block, written first; empty for most transactions.</param>
/// <param name="source">The caller's payload.</param>
/// <param name="destination">The reserved buffer, at least as long as <paramref name="prefix"/> and <paramref name="source"/> together.</param>
internal readonly ref struct CopyPayloadStores(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> source, Span<byte> destination) : IPublishStores<TransactionRecordLayout>
{
    private readonly ReadOnlySpan<byte> _prefix = prefix;
    private readonly ReadOnlySpan<byte> _source = source;
    private readonly Span<byte> _destination = destination;

    /// <inheritdoc/>
    public void StorePayload()
    {
        if (!_prefix.IsEmpty)
        {
            _prefix.CopyTo(_destination);
        }
        _source.CopyTo(_destination[_prefix.Length..]);
    }

    /// <inheritdoc/>
    public void StoreRecord(ref TransactionRecordLayout slot, in TransactionRecordLayout record) => slot = record;

    /// <inheritdoc/>
    public void StoreTail(ref ulong tail, ulong value) =>
        // Release: pairs with the acquire load of the tail in RingConsumer.LoadTail; the payload copied and the
        // record stored above are visible to a receiver that sees the new tail.
        Volatile.Write(ref tail, value);
}
