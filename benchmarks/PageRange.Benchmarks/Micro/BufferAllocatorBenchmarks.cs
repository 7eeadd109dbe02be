using BenchmarkDotNet.Attributes;
using PageRange.Allocation;
using PageRange.Memory;

namespace PageRange.Benchmarks.Micro;

/// <summary>
/// The writer's allocator cost per transaction: reserve, commit and free one buffer while others stay live.
/// <see cref="LiveBuffers"/> counts the buffers live during the pair, the reserved one included, so 1 and 8 run in
/// array mode and 64 and 1024 in tree mode. Pages stay backed (a private shrinker never scans), so the pair makes no
/// system call; <c>[MemoryDiagnoser]</c> shows it allocates nothing.
/// </summary>
[MemoryDiagnoser]
public class BufferAllocatorBenchmarks
{
    private const int Operations = 1024;
    private const long BufferSize = 256;
    private const long RegionSize = 4L << 20;

    private SharedRegion? _region;
    private ShrinkablePageRange? _pages;
    private BufferAllocator? _allocator;

    /// <summary>Buffers live while a pair runs, the reserved one included.</summary>
    [Params(1, 8, 64, 1024)]
    public int LiveBuffers { get; set; }

    /// <summary>Whether the buffers are oneway (charged to the quota; the spam check stays off, the quota being healthy).</summary>
    [Params(false, true)]
    public bool Oneway { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _region = SharedRegion.Create("pagerange-bench-alloc", RegionSize);
        _pages = new ShrinkablePageRange(_region, 0, (int)(RegionSize / SharedRegion.PageSize), new Shrinker());
        _allocator = new BufferAllocator(_pages);
        for (int i = 0; i < LiveBuffers - 1; i++)
        {
            _allocator.Commit(_allocator.Reserve(BufferSize, Oneway));
        }
        // One pair first, so a tree's pool has grown and the mode is settled before measuring.
        ReserveCommitFree();
    }

    [Benchmark(OperationsPerInvoke = Operations)]
    public void ReserveCommitFree()
    {
        BufferAllocator allocator = _allocator!;
        for (int i = 0; i < Operations; i++)
        {
            long offset = allocator.Reserve(BufferSize, Oneway);
            allocator.Commit(offset);
            allocator.Free(offset);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pages?.Dispose();
        _region?.Dispose();
    }
}
