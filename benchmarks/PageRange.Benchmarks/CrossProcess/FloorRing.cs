using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>
/// One direction of the <c>floor</c> transport: a single-producer single-consumer byte ring in a memfd both processes
/// map, and nothing else: no allocator, no records beyond an 8-byte length and code in front of each message, no
/// library protocol. The producer copies the payload in and publishes its head with one release store; the consumer
/// spins on the head, reads in place, and publishes its tail. What the machine can do with the same copies.
/// </summary>
/// <remarks>
/// The floor's code must not depend on which workload the JIT profiled first (after a ping-pong, the oneway floor
/// measured 11-20 M messages/s against 17-24 M without one, 2026-12-03): the per-message code is forced inline, and
/// each wait is a method of its own, so its loop is compiled from its own profile.
/// Layout: the head and the tail each own a cache line at <c>control</c> and <c>control + 64</c>; the ring is
/// <c>capacity</c> bytes at <c>ring</c>. A message at position <c>p</c> (counted from the start, never wrapped) lives
/// at <c>p % capacity</c>: a little-endian length and code, then the payload, padded to 64 bytes. A message that would
/// cross the ring's end is preceded by a skip marker (length -1) and starts at the ring's start instead.
/// </remarks>
internal sealed class FloorRing
{
    private const int HeaderSize = 8;
    private const int SkipMarker = -1;

    private readonly SharedRegion _region;
    private readonly long _headOffset;
    private readonly long _tailOffset;
    private readonly long _ring;
    private readonly long _capacity;
    // The producer's own copy of its head and the tail it last saw; the consumer's own copy of its tail and the head it
    // last saw: each side reads the other's line only when its cached value says it must.
    private long _head;
    private long _seenTail;
    private long _tail;
    private long _seenHead;
    private int _pendingStride;

    public FloorRing(SharedRegion region, long control, long ring, long capacity)
    {
        _region = region;
        _headOffset = control;
        _tailOffset = control + 64;
        _ring = ring;
        _capacity = capacity;
        _head = _seenHead = Volatile.Read(ref Word(_headOffset));
        _tail = _seenTail = Volatile.Read(ref Word(_tailOffset));
    }

    /// <summary>The largest payload a ring of <paramref name="capacity"/> bytes carries.</summary>
    public static int MaxPayload(long capacity) => (int)Math.Min(int.MaxValue, capacity - HeaderSize - 64);

    /// <summary>Copies <paramref name="payload"/> in and publishes it; spins while the ring is full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Send(uint code, ReadOnlySpan<byte> payload)
    {
        long stride = Stride(payload.Length);
        long offset = _head % _capacity;
        bool skip = offset + stride > _capacity;
        long end = _head + (skip ? _capacity - offset : 0) + stride;
        if (end - _seenTail > _capacity)
        {
            WaitForRoom(end);
        }
        if (skip)
        {
            WriteHeader(offset, SkipMarker, 0);
            _head += _capacity - offset;
            offset = 0;
        }
        WriteHeader(offset, payload.Length, code);
        payload.CopyTo(_region.GetSpan(_ring + offset + HeaderSize, payload.Length));
        _head += stride;
        Volatile.Write(ref Word(_headOffset), _head);
    }

    /// <summary>Spins until a message is published and returns it in place; <see cref="Release"/> hands its bytes back.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ReadOnlySpan<byte> Receive(out uint code)
    {
        while (true)
        {
            if (_seenHead == _tail)
            {
                WaitForMessage();
            }
            long offset = _tail % _capacity;
            Span<byte> header = _region.GetSpan(_ring + offset, HeaderSize);
            // Copied once to locals, then checked: the peer's word is never read twice.
            int length = BitConverter.ToInt32(header);
            code = BitConverter.ToUInt32(header[4..]);
            if (length == SkipMarker)
            {
                _tail += _capacity - offset;
                continue;
            }
            if (length < 0 || offset + Stride(length) > _capacity)
            {
                throw new InvalidOperationException($"The floor ring holds a message of {length} bytes at {offset}: corrupt.");
            }
            _pendingStride = (int)Stride(length);
            return _region.GetSpan(_ring + offset + HeaderSize, length);
        }
    }

    /// <summary>Spins until the consumer's tail leaves room for a message ending at <paramref name="end"/>.</summary>
    /// <remarks>Out of line: its own method, so its loop is compiled from its own profile, whatever the workload.</remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForRoom(long end)
    {
        var spin = new FloorSpin();
        while (end - (_seenTail = Volatile.Read(ref Word(_tailOffset))) > _capacity)
        {
            spin.Once();
        }
    }

    /// <summary>Spins until the producer's head moves past our tail.</summary>
    /// <remarks>Out of line, as <see cref="WaitForRoom"/>; it leaves as soon as a look finds the head moved (no pause after it).</remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void WaitForMessage()
    {
        var spin = new FloorSpin();
        while ((_seenHead = Volatile.Read(ref Word(_headOffset))) == _tail)
        {
            spin.Once();
        }
    }

    /// <summary>Hands the bytes of the last received message back to the producer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release()
    {
        _tail += _pendingStride;
        _pendingStride = 0;
        Volatile.Write(ref Word(_tailOffset), _tail);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void WriteHeader(long offset, int length, uint code)
    {
        Span<byte> header = _region.GetSpan(_ring + offset, HeaderSize);
        BitConverter.TryWriteBytes(header, length);
        BitConverter.TryWriteBytes(header[4..], code);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long Stride(int length) => (HeaderSize + (long)length + 63) & ~63L;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref long Word(long offset) =>
        // SAFETY: the offset is one of the two 64-byte-aligned control words inside the region (checked by GetSpan), so the
        // long is aligned and lies in the mapping, which lives as long as this ring's owner holds the region.
        ref Unsafe.As<byte, long>(ref MemoryMarshal.GetReference(_region.GetSpan(offset, sizeof(long))));
}

/// <summary>
/// The floor's wait: pause instructions only, with a yield every few thousand rounds so a floor run on an overloaded
/// machine cannot starve the thread it waits for; and a deadline, so a peer whose host died does not spin forever.
/// </summary>
internal struct FloorSpin
{
    private static readonly long s_giveUpTicks = Stopwatch.Frequency * 120;
    private int _count;
    private long _since;

    public void Once()
    {
        // PageRange's own busy poll (the pause instruction itself, about 20 ns on the EPYC VM; a runtime SpinWait unit
        // is 46-51 ns there): a floor that polled slower than the transport would flatter its ratios.
        Doorbell.PausePoll();
        if ((++_count & 0xFFF) == 0)
        {
            Thread.Yield();
            long now = Stopwatch.GetTimestamp();
            if (_since == 0)
            {
                _since = now;
            }
            else if (now - _since > s_giveUpTicks)
            {
                throw new TimeoutException("The floor transport's other side has not moved for two minutes.");
            }
        }
    }
}
