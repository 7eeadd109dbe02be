using CsCheck;
using PageRange.Allocation;
using PageRange.Memory;

namespace PageRange.Tests.Allocation;

/// <summary>
/// Random reserve/commit/free/abort sequences, sync and oneway, against <see cref="AllocatorModel"/>, with every
/// invariant checked after every step on a real memfd (BINDER.md A.10, B.3-B.8).
/// </summary>
public sealed class BufferAllocatorPropertyTests
{
    private static readonly int s_page = AllocatorHarness.Page;

    public enum OpKind
    {
        Reserve,
        Commit,
        Free,
        Abort,
        BogusFree,
        Scan,
        ReserveWithFault,
    }

    public readonly record struct Op(OpKind Kind, long Size, bool Oneway, bool Clear, int Pid, int Pick);

    /// <summary>Sizes that end on the same page, on a page boundary, just past one, and a few that can never fit.</summary>
    private static readonly Gen<long> s_size = Gen.Frequency(
        (5, Gen.Long[0, 96]),
        (4, Gen.Long[0, 2L * s_page]),
        (4, Gen.Select(Gen.Int[0, 3], Gen.Int[-3, 3], (pages, delta) => Math.Max(0L, ((long)pages * s_page) + (delta * 8L)))),
        (1, Gen.Long[0, 9L * s_page]));

    private static readonly Gen<Op> s_op = Gen.Select(
        Gen.FrequencyConst(
            (8, OpKind.Reserve), (4, OpKind.Commit), (5, OpKind.Free), (2, OpKind.Abort),
            (1, OpKind.BogusFree), (1, OpKind.Scan), (1, OpKind.ReserveWithFault)),
        s_size, Gen.Bool, Gen.Int[0, 3], Gen.Int[1, 2], Gen.Int[0, 1 << 20],
        (kind, size, oneway, clear, pid, pick) => new Op(kind, size, oneway, clear == 0, pid, pick));

    [Fact]
    public void RandomSequences_SmallRegions_MatchModelAfterEveryStep() =>
        Gen.Select(Gen.Int[1, 8], s_op.Array[1, 90])
            .Sample((pages, ops) => Run(pages, ops), iter: 250, threads: 2);

    [Fact]
    public void RandomSequences_ManySmallBuffers_MatchModelAfterEveryStep() =>
        // Mostly tiny reservations, so the tree holds dozens of buffers and the spam check sees many per sender.
        Gen.Select(Gen.Int[1, 3], s_op.Select(op => op with { Size = op.Size % 200 }).Array[40, 200])
            .Sample((pages, ops) => Run(pages, ops), iter: 60, threads: 2);

    private static void Run(int pageCount, Op[] ops)
    {
        using var harness = new AllocatorHarness(pageCount);
        BufferAllocator allocator = harness.Allocator;
        var model = new AllocatorModel(allocator.DataSize, pageCount);
        var events = new List<OnewaySpamSuspectedEventArgs>();
        allocator.OnewaySpamSuspected += (_, e) => events.Add(e);

        foreach (Op op in ops)
        {
            Apply(harness, model, events, op);
            Check(harness, model);
        }

        // Free everything: one free range covers the area, every page ever backed is Available, none is Used.
        foreach (ModelBuffer buffer in model.Live.ToArray())
        {
            if (buffer.State == ExtentState.Reserved)
            {
                allocator.Abort(buffer.Offset);
            }
            else
            {
                Assert.True(allocator.Free(buffer.Offset));
            }
            model.Release(buffer);
            Check(harness, model);
        }
        Assert.Equal([(0L, allocator.DataSize)], allocator.GetFreeRanges());
        Assert.DoesNotContain(PageState.Used, harness.PageStates());
        Assert.Equal(model.Backed.Count(b => b), harness.Shrinker.Count());

        // A full scan reclaims every page.
        Assert.Equal(model.ScanAll(), harness.Shrinker.Scan(long.MaxValue));
        Assert.All(harness.PageStates(), state => Assert.Equal(PageState.Free, state));
        Assert.Equal(0, harness.Region.ResidentBytes);
    }

    private static void Apply(AllocatorHarness harness, AllocatorModel model, List<OnewaySpamSuspectedEventArgs> events, Op op)
    {
        BufferAllocator allocator = harness.Allocator;
        switch (op.Kind)
        {
            case OpKind.Reserve:
            case OpKind.ReserveWithFault:
                Reserve(harness, model, events, op);
                break;

            case OpKind.Commit:
                if (Pick(model, ExtentState.Reserved, op.Pick) is { } toCommit)
                {
                    allocator.Commit(toCommit.Offset);
                    toCommit.State = ExtentState.Allocated;
                }
                else
                {
                    // Nothing to commit: committing a delivered or unknown offset fails.
                    long offset = Pick(model, ExtentState.Allocated, op.Pick)?.Offset ?? (op.Size | 4);
                    Assert.Throws<InvalidOperationException>(() => allocator.Commit(offset));
                }
                break;

            case OpKind.Free:
                if (Pick(model, ExtentState.Allocated, op.Pick) is { } toFree)
                {
                    Assert.True(allocator.Free(toFree.Offset));
                    AssertContentsAfterFree(harness, toFree);
                    model.Release(toFree);
                }
                else
                {
                    Assert.False(allocator.Free(op.Size | 4));
                    model.IgnoredFrees++;
                }
                break;

            case OpKind.Abort:
                if (Pick(model, ExtentState.Reserved, op.Pick) is { } toAbort)
                {
                    allocator.Abort(toAbort.Offset);
                    AssertContentsAfterFree(harness, toAbort);
                    model.Release(toAbort);
                }
                else
                {
                    // Aborting a delivered buffer (binder's EPERM) or an unknown offset (EINVAL) fails.
                    long offset = Pick(model, ExtentState.Allocated, op.Pick)?.Offset ?? (op.Size | 4);
                    Assert.Throws<InvalidOperationException>(() => allocator.Abort(offset));
                }
                break;

            case OpKind.BogusFree:
                BogusFree(allocator, model, op);
                break;

            case OpKind.Scan:
                Assert.Equal(model.ScanAll(), harness.Shrinker.Scan(long.MaxValue));
                break;

            default:
                throw new InvalidOperationException(op.Kind.ToString());
        }
    }

    private static void Reserve(AllocatorHarness harness, AllocatorModel model, List<OnewaySpamSuspectedEventArgs> events, Op op)
    {
        BufferAllocator allocator = harness.Allocator;
        int faultPage = op.Kind == OpKind.ReserveWithFault ? op.Pick % harness.PageCount : -1;
        if (faultPage >= 0)
        {
            harness.Region.AllocationFaultInjector = offset => offset == (long)faultPage * s_page;
        }
        bool useTry = op.Pick % 2 == 0;
        int eventsBefore = events.Count;
        try
        {
            AllocatorModel.Outcome outcome = model.Place(op.Size, op.Oneway, op.Clear, op.Pid, out long expected, out bool spam);
            switch (outcome)
            {
                case AllocatorModel.Outcome.TooLarge:
                    Assert.Throws<MessageTooLargeException>(() => Reserve(allocator, op, useTry));
                    break;
                case AllocatorModel.Outcome.Full:
                    if (useTry)
                    {
                        Assert.False(allocator.TryReserve(op.Size, op.Oneway, op.Clear, op.Pid, out _));
                    }
                    else
                    {
                        Assert.Throws<RegionFullException>(() => allocator.Reserve(op.Size, op.Oneway, op.Clear, op.Pid));
                    }
                    break;
                default:
                    ModelBuffer buffer = model.Live.Single(b => b.Offset == expected);
                    if (!model.Back(buffer.Offset, buffer.Size, faultPage))
                    {
                        // The reservation is rolled back: its range is free again and no page it alone touched is Used.
                        Assert.Throws<BackingAllocationException>(() => Reserve(allocator, op, useTry));
                        model.Release(buffer);
                        spam = false;
                        break;
                    }
                    Assert.Equal(expected, Reserve(allocator, op, useTry));
                    harness.Pages.GetSpan(buffer.Offset, (int)buffer.Size).Fill(buffer.Pattern);
                    break;
            }
            Assert.Equal(eventsBefore + (spam ? 1 : 0), events.Count);
            if (spam)
            {
                Assert.Equal(op.Pid, events[^1].SenderPid);
                Assert.Equal(expected, events[^1].Offset);
                Assert.Equal(model.FreeOneway, events[^1].FreeOnewaySpace);
            }
        }
        finally
        {
            harness.Region.AllocationFaultInjector = null;
        }
    }

    private static long Reserve(BufferAllocator allocator, Op op, bool useTry)
    {
        if (!useTry)
        {
            return allocator.Reserve(op.Size, op.Oneway, op.Clear, op.Pid);
        }
        Assert.True(allocator.TryReserve(op.Size, op.Oneway, op.Clear, op.Pid, out long offset));
        return offset;
    }

    private static void BogusFree(BufferAllocator allocator, AllocatorModel model, Op op)
    {
        switch (op.Pick % 3)
        {
            case 0 when Pick(model, ExtentState.Reserved, op.Pick) is { } undelivered:
                Assert.False(allocator.Free(undelivered.Offset));
                break;
            case 1 when Pick(model, ExtentState.Allocated, op.Pick) is { } twice:
                Assert.True(allocator.Free(twice.Offset));
                model.Release(twice);
                Assert.False(allocator.Free(twice.Offset));
                break;
            default:
                // The start of a free range, or an offset no buffer can start at.
                long offset = model.Gaps().Select(g => g.Offset).DefaultIfEmpty(op.Size | 4).First();
                Assert.False(allocator.Free(offset));
                break;
        }
        model.IgnoredFrees++;
    }

    private static ModelBuffer? Pick(AllocatorModel model, ExtentState state, int pick)
    {
        ModelBuffer[] candidates = [.. model.Live.Where(b => b.State == state)];
        return candidates.Length == 0 ? null : candidates[pick % candidates.Length];
    }

    /// <summary>
    /// Right after a free the pages are still backed, so the mapping shows what the buffer left behind: zeros with
    /// clear-on-free, else the pattern written at reservation (binder keeps the contents of pages it reuses).
    /// </summary>
    private static void AssertContentsAfterFree(AllocatorHarness harness, ModelBuffer buffer)
    {
        Span<byte> bytes = harness.Region.GetSpan(buffer.Offset, (int)buffer.Size);
        byte expected = buffer.Clear ? (byte)0 : buffer.Pattern;
        int wrong = bytes.IndexOfAnyExcept(expected);
        Assert.True(wrong < 0, $"Byte {wrong} of the freed buffer at {buffer.Offset} is {(wrong < 0 ? 0 : bytes[wrong])}, expected {expected}.");
    }

    private static void Check(AllocatorHarness harness, AllocatorModel model)
    {
        BufferAllocator allocator = harness.Allocator;
        allocator.Validate();

        BufferInfo[] buffers = allocator.GetBuffers();
        Assert.Equal(
            model.Live.Select(b => new BufferInfo(b.Offset, b.Size, b.State, b.Oneway, b.Clear, b.Pid)),
            buffers);
        for (int i = 1; i < buffers.Length; i++)
        {
            Assert.True(buffers[i - 1].End <= buffers[i].Offset, "Live buffers never overlap.");
        }

        (long Offset, long Size)[] free = allocator.GetFreeRanges();
        Assert.Equal(model.Gaps(), free);
        for (int i = 1; i < free.Length; i++)
        {
            Assert.True(free[i - 1].Offset + free[i - 1].Size < free[i].Offset, "Free ranges never touch.");
        }

        Assert.Equal(model.Mode, allocator.Mode);
        Assert.Equal(allocator.OnewayQuota - model.Live.Where(b => b.Oneway).Sum(b => b.Size), allocator.FreeOnewaySpace);
        Assert.Equal(model.FreeOneway, allocator.FreeOnewaySpace);
        Assert.Equal(model.Live.Count, allocator.BufferCount);
        Assert.Equal(model.IgnoredFrees, allocator.IgnoredFrees);

        BufferAllocatorStats stats = allocator.GetStats();
        Assert.Equal(model.FailedReservations, stats.FailedReservations);
        Assert.Equal(model.SpamReports, stats.OnewaySpamReports);
        Assert.Equal(free.Length, stats.FreeRanges);
        Assert.Equal(allocator.DataSize - model.Live.Sum(b => b.Size), stats.FreeBytes);

        harness.AssertPages([.. model.LiveRanges()], model.Backed);
    }
}
