namespace PageRange.Transport;

/// <summary>
/// The call chain a two-way call belongs to, binder's transaction stack: a call made on behalf of an incoming call
/// (a nested call) carries that call's chain one level deeper, so that the peer's thread waiting in that chain runs
/// it instead of a thread of its pool, and A -> B -> A -> B works with one thread on each side.
/// </summary>
/// <remarks>
/// Get one from <see cref="Transaction.NestedChain"/> and pass it to
/// <see cref="PageRangeConnection.Call(uint, ReadOnlySpan{byte}, CallChain, TimeSpan?, CancellationToken)"/> or
/// <see cref="PageRangeConnection.CallAsync(uint, ReadOnlyMemory{byte}, CallChain, TimeSpan?, CancellationToken)"/>.
/// <c>default</c> is no chain: the call starts a new one. A chain is only meaningful on the connection its transaction
/// arrived on. Calls deeper than <see cref="PageRangeOptions.MaxCallDepth"/> fail at once.
/// </remarks>
public readonly struct CallChain : IEquatable<CallChain>
{
    internal CallChain(ulong id, uint depth)
    {
        Id = id;
        DepthValue = depth;
    }

    /// <summary>The chain's id, unique on its connection; 0 for no chain.</summary>
    public ulong Id { get; }

    /// <summary>How deep a call made in this chain is: 0 for the call that started it.</summary>
    public int Depth => (int)DepthValue;

    /// <summary>Whether this is no chain (<c>default</c>): a call made with it starts a new chain.</summary>
    public bool IsNone => Id == 0;

    internal uint DepthValue { get; }

    /// <inheritdoc/>
    public bool Equals(CallChain other) => Id == other.Id && DepthValue == other.DepthValue;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is CallChain other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Id, DepthValue);

    /// <inheritdoc/>
    public override string ToString() => IsNone ? "(no chain)" : $"chain {Id:x} depth {DepthValue}";

    /// <summary>Compares two chains.</summary>
    public static bool operator ==(CallChain left, CallChain right) => left.Equals(right);

    /// <summary>Compares two chains.</summary>
    public static bool operator !=(CallChain left, CallChain right) => !left.Equals(right);
}
