using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using static PageRange.Interop;

namespace PageRange.Memory;

/// <summary>
/// A sealed memfd mapped <c>MAP_SHARED</c>: the memory one process receives transactions in, written by its peer.
/// </summary>
/// <remarks>
/// The size is fixed at creation and sealed (<c>F_SEAL_SHRINK | F_SEAL_GROW</c>), so a peer can neither truncate the
/// file under the other side's mapping (which would raise SIGBUS there) nor grow it; <c>F_SEAL_SEAL</c> then forbids
/// any further seal, so nobody can later add <c>F_SEAL_WRITE</c> or <c>F_SEAL_FUTURE_WRITE</c> to stop the writer's
/// stores and hole punches. A region received from a peer must carry exactly these seals and live on tmpfs/shmem
/// (never hugetlbfs, whose pages cannot be punched page by page and are not reclaimed the same way). Pages are backed only while
/// used; <see cref="ResidentBytes"/> is the kernel's own count of backed bytes. The mapping is not inherited by
/// fork children and the descriptor is close-on-exec. Thread safety: every member may be called from any thread;
/// <see cref="Dispose"/> unmaps only after every internal borrower has let go.
/// </remarks>
public sealed unsafe partial class SharedRegion : IDisposable
{
    /// <summary>The largest region <see cref="Create"/> accepts unless told otherwise: 1 GiB.</summary>
    public const long DefaultMaxSize = 1L << 30;

    /// <summary>The seals every region carries; <see cref="Open"/> refuses a descriptor with any other set.</summary>
    internal const int RequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

    /// <summary>
    /// Seals <see cref="Open"/> tolerates besides <see cref="RequiredSeals"/>: the kernel adds <c>F_SEAL_EXEC</c> by
    /// itself where <c>vm.memfd_noexec</c> asks for it, and it stops neither writes nor punches (only chmod +x).
    /// </summary>
    internal const int ToleratedSeals = F_SEAL_EXEC;

    private readonly SafeMemfdHandle _fd;
    private readonly SafeMappingHandle _mapping;
    private readonly byte* _base;
    private int _disposed;

    // The owner's reference (dropped by Dispose) plus one per AddRef. The handles are disposed only when this reaches
    // zero: a disposed SafeHandle refuses DangerousAddRef, so a P/Invoke through it would throw even while a borrower
    // (a page range, a shrinker punching one of its pages) still needs the descriptor.
    private int _refCount = 1;

    private SharedRegion(SafeMemfdHandle fd, SafeMappingHandle mapping, long size)
    {
        _fd = fd;
        _mapping = mapping;
        Size = size;
        // SAFETY: the mapping handle is valid (mmap succeeded) and stays mapped until every reference taken
        // through AddRef is released and Dispose has run, so the address outlives every use of _base.
        _base = (byte*)mapping.DangerousGetHandle();
    }

    /// <summary>The size of the system's pages, the unit in which regions are backed and reclaimed.</summary>
    public static int PageSize { get; } = OperatingSystem.IsLinux() ? Interop.Libc.GetPageSize() : 4096;

    /// <summary>The region's size in bytes.</summary>
    public long Size { get; }

    /// <summary>The bytes of the region the kernel has backed with memory right now (<c>st_blocks * 512</c>).</summary>
    /// <exception cref="ObjectDisposedException">The region was disposed.</exception>
    public long ResidentBytes
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed != 0, this);
            return ResidentBytesCore;
        }
    }

    /// <summary><see cref="ResidentBytes"/> for a borrower that holds a reference (see <see cref="AddRef"/>), also after <see cref="Dispose"/>.</summary>
    internal long ResidentBytesCore => Fstat(_fd).AllocatedBytes;

    /// <summary>The region's first byte. Valid while a reference is held (see <see cref="AddRef"/>).</summary>
    internal byte* BasePointer => _base;

    /// <summary>The memfd, for passing to the peer with SCM_RIGHTS.</summary>
    internal SafeMemfdHandle Handle => _fd;

    /// <summary>Test seam: when set and it returns <see langword="true"/> for an offset, backing that page fails as if with ENOSPC.</summary>
    internal Func<long, bool>? AllocationFaultInjector { get; set; }

    /// <summary>Test seam: when set and it returns <see langword="true"/> for an offset, punching that page fails as if with EINVAL.</summary>
    internal Func<long, bool>? PunchFaultInjector { get; set; }

    /// <summary>Creates a region of <paramref name="size"/> bytes, sealed against resizing and mapped read-write.</summary>
    /// <param name="name">A name for the memfd, shown in <c>/proc/&lt;pid&gt;/fd</c>; at most 249 bytes.</param>
    /// <param name="size">The size in bytes: positive, a multiple of <see cref="PageSize"/>, at most <paramref name="maxSize"/>.</param>
    /// <param name="maxSize">The largest size accepted. Defaults to <see cref="DefaultMaxSize"/>.</param>
    /// <returns>The region; no page of it is backed yet.</returns>
    /// <exception cref="ArgumentException">A size is zero, negative, not page-aligned or too large, or the name is empty.</exception>
    /// <exception cref="PlatformNotSupportedException">Not on Linux.</exception>
    /// <exception cref="SystemCallException">The kernel refused to create, seal or map the memfd.</exception>
    public static SharedRegion Create(string name, long size, long maxSize = DefaultMaxSize)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (System.Text.Encoding.UTF8.GetByteCount(name) > 249)
        {
            throw new ArgumentException("A memfd name is at most 249 bytes of UTF-8.", nameof(name));
        }
        ValidateSize(size, maxSize);
        EnsureLinux();

        SafeMemfdHandle fd = MemfdCreate(name);
        try
        {
            Ftruncate(fd, size);
            AddSeals(fd, RequiredSeals);
            SafeMappingHandle mapping = MapShared(fd, size, writable: true);
            return new SharedRegion(fd, mapping, size);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Maps a region from a descriptor received from the peer, refusing one that is not a tmpfs/shmem memfd, whose
    /// seals are not exactly <see cref="RequiredSeals"/>, or whose size is not <paramref name="expectedSize"/>.
    /// </summary>
    /// <param name="fd">The descriptor; the region takes ownership of it, also when this throws.</param>
    /// <param name="expectedSize">The size the peer announced.</param>
    /// <param name="writableBytes">Bytes from the start mapped read-write; the rest is mapped read-only.
    /// A multiple of <see cref="PageSize"/>; pass <paramref name="expectedSize"/> for a fully writable view.</param>
    /// <exception cref="ArgumentException">A size is invalid.</exception>
    /// <exception cref="ProtocolViolationException">The descriptor is not on tmpfs/shmem (hugetlbfs, a disk file), its
    /// seals are not exactly F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, or its size is not what was announced.</exception>
    /// <exception cref="SystemCallException">The kernel refused to describe or map it.</exception>
    internal static SharedRegion Open(SafeMemfdHandle fd, long expectedSize, long writableBytes)
    {
        ArgumentNullException.ThrowIfNull(fd);
        try
        {
            ValidateSize(expectedSize, DefaultMaxSize);
            ArgumentOutOfRangeException.ThrowIfNegative(writableBytes);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(writableBytes, expectedSize);
            if (writableBytes % PageSize != 0)
            {
                throw new ArgumentException($"The writable prefix must be a multiple of the page size ({PageSize}).", nameof(writableBytes));
            }
            EnsureLinux();

            // The file system first: a disk file or a hugetlbfs memfd may not support seals at all, and the question
            // that decides is where the pages live.
            long fileSystem = GetFileSystemType(fd);
            if (fileSystem != TMPFS_MAGIC)
            {
                throw new ProtocolViolationException(fileSystem == HUGETLBFS_MAGIC
                    ? "The peer's region is a hugetlbfs memfd; only tmpfs/shmem memfds are accepted (huge pages cannot be reclaimed page by page)."
                    : $"The peer's region is not a tmpfs/shmem memfd (file system magic 0x{fileSystem:x}); only those are accepted.");
            }
            int seals = GetSeals(fd);
            if ((seals & ~ToleratedSeals) != RequiredSeals)
            {
                const int sizeSeals = F_SEAL_SHRINK | F_SEAL_GROW;
                string why = (seals & sizeSeals) != sizeSeals
                    ? "is not sealed against resizing, so it could be truncated under our mapping"
                    : (seals & F_SEAL_SEAL) == 0
                        ? "is not sealed against further seals, so a write seal could be added later to stop our writes and hole punches"
                        : "carries a seal beyond the size seals, which would stop our writes or hole punches";
                throw new ProtocolViolationException(
                    $"The peer's region {why} (seals 0x{seals:x}; exactly F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, 0x{RequiredSeals:x}, is required).");
            }
            long actualSize = Fstat(fd).Size;
            if (actualSize != expectedSize)
            {
                throw new ProtocolViolationException(
                    $"The peer's region is {actualSize} bytes but {expectedSize} were announced.");
            }

            SafeMappingHandle mapping = MapShared(fd, expectedSize, writable: true);
            if (writableBytes < expectedSize)
            {
                try
                {
                    // SAFETY: we own the fresh mapping and [writableBytes, expectedSize) lies inside it.
                    Protect(mapping.DangerousGetHandle() + (nint)writableBytes, expectedSize - writableBytes, PROT_READ);
                }
                catch
                {
                    mapping.Dispose();
                    throw;
                }
            }
            return new SharedRegion(fd, mapping, expectedSize);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>A span over <c>[offset, offset+length)</c>. Valid while a reference is held.</summary>
    internal Span<byte> GetSpan(long offset, int length)
    {
        CheckRange(offset, length);
        // SAFETY: [offset, offset+length) lies inside the mapping (checked above), which stays mapped while the caller holds a reference.
        return new Span<byte>(_base + offset, length);
    }

    /// <summary>Backs <c>[offset, offset+length)</c> with zeroed memory (<c>fallocate</c> mode 0).</summary>
    /// <exception cref="BackingAllocationException">The kernel has no memory, or the fault seam said so.</exception>
    internal void Allocate(long offset, long length)
    {
        CheckRange(offset, length);
        if (AllocationFaultInjector is { } inject && inject(offset))
        {
            throw GetExceptionForErrno(ENOSPC, "fallocate");
        }
        Interop.Allocate(_fd, offset, length);
    }

    /// <summary>Returns <c>[offset, offset+length)</c> to the kernel (<c>fallocate(PUNCH_HOLE | KEEP_SIZE)</c>).</summary>
    /// <exception cref="SystemCallException">The kernel refused, or the fault seam said so.</exception>
    internal void PunchHole(long offset, long length)
    {
        CheckRange(offset, length);
        if (PunchFaultInjector is { } inject && inject(offset))
        {
            throw GetExceptionForErrno(EINVAL, "fallocate(PUNCH_HOLE)");
        }
        Interop.PunchHole(_fd, offset, length);
    }

    /// <summary>Keeps the descriptor and mapping alive and usable until the matching <see cref="ReleaseRef"/>, even across <see cref="Dispose"/>.</summary>
    /// <exception cref="ObjectDisposedException">Every reference is gone already: the region is closed.</exception>
    internal void AddRef()
    {
        int count = Volatile.Read(ref _refCount);
        while (true)
        {
            ObjectDisposedException.ThrowIf(count == 0, this);
            int seen = Interlocked.CompareExchange(ref _refCount, count + 1, count);
            if (seen == count)
            {
                return;
            }
            count = seen;
        }
    }

    /// <summary>Like <see cref="AddRef"/>, but returns <see langword="false"/> instead of throwing once the region is gone.</summary>
    internal bool TryAddRef()
    {
        int count = Volatile.Read(ref _refCount);
        while (count != 0)
        {
            int seen = Interlocked.CompareExchange(ref _refCount, count + 1, count);
            if (seen == count)
            {
                return true;
            }
            count = seen;
        }
        return false;
    }

    /// <summary>
    /// Whether the last reference punches the whole file out before it closes the descriptor. For a connection's own
    /// region, which the peer also maps and may keep for as long as it likes: the pages we backed (header and rings, about
    /// 130 KiB with the default rings, up to about 5 MiB with the largest) would otherwise stay allocated, charged to us,
    /// for each connection a client opened, kept the descriptor of and dropped (found by review). Set only when the peer
    /// reads nothing more from it: it ended first, broke the protocol, or never completed the handshake. After our own
    /// close an honest peer still reads the header (ring indices, free ring) until it notices the end, and zeros there
    /// would be a protocol violation to it, not our death (seen in CI when the punch was unconditional).
    /// </summary>
    internal bool PunchOnLastRelease { get; set; }

    /// <summary>Gives back a reference taken with <see cref="AddRef"/>; the last one closes the descriptor and unmaps.</summary>
    internal void ReleaseRef()
    {
        int count = Interlocked.Decrement(ref _refCount);
        Debug.Assert(count >= 0, "More references released than taken.");
        if (count == 0)
        {
            if (PunchOnLastRelease)
            {
                try
                {
                    // Nobody of ours reads it any more (no reference is left): the whole file, the peer's pages too.
                    Interop.PunchHole(_fd, 0, Size);
                }
                catch (SystemCallException)
                {
                    // The descriptor still closes; the kernel frees the pages once the peer closes its own.
                }
            }
            _mapping.Dispose();
            _fd.Dispose();
        }
    }

    /// <summary>Closes the descriptor and unmaps the region once no internal borrower holds it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        ReleaseRef();
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size - length)
        {
            ThrowHelper.ThrowOutOfRange(offset, length, Size);
        }
    }

    [SuppressMessage("Style", "IDE0046", Justification = "One check per line reads better.")]
    private static void ValidateSize(long size, long maxSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, maxSize);
        if (size % PageSize != 0)
        {
            throw new ArgumentException($"A region's size must be a multiple of the page size ({PageSize}); {size} is not.", nameof(size));
        }
    }
}
