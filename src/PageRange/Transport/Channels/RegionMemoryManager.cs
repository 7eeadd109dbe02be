using System.Buffers;

namespace PageRange.Transport;

/// <summary>
/// Hands out <see cref="ReadOnlyMemory{T}"/> over a region's data area without copying: one instance per channel,
/// created once, so slicing a payload allocates nothing.
/// </summary>
/// <remarks>
/// The mapping is never moved, so pinning is free. After the owning channel is disposed every access throws
/// <see cref="ObjectDisposedException"/> instead of touching an unmapped address (a memory taken before the dispose and
/// used concurrently with it is the caller's bug, as for any span over the payload). The channel hands out only
/// <see cref="ReadOnlyMemory{T}"/>: the data area is mapped read-only, so a write through <see cref="GetSpan"/> would fault.
/// </remarks>
internal sealed unsafe class RegionMemoryManager : MemoryManager<byte>
{
    private readonly byte* _data;
    private readonly int _length;
    private readonly InboundChannel _owner;

    /// <summary>Creates the manager over <paramref name="length"/> bytes at <paramref name="data"/>.</summary>
    /// <remarks>Safety: the bytes stay mapped until <paramref name="owner"/> is disposed.</remarks>
    internal RegionMemoryManager(byte* data, int length, InboundChannel owner)
    {
        _data = data;
        _length = length;
        _owner = owner;
    }

    /// <inheritdoc/>
    public override Span<byte> GetSpan()
    {
        _owner.ThrowIfDisposed();
        // SAFETY: [_data, _data+_length) is the data area, mapped until the owner is disposed (checked above).
        return new Span<byte>(_data, _length);
    }

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _length);
        _owner.ThrowIfDisposed();
        // SAFETY: the index is within the data area (checked above); mapped memory never moves, so no pin is needed.
        return new MemoryHandle(_data + elementIndex);
    }

    /// <inheritdoc/>
    public override void Unpin()
    {
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
    }
}
