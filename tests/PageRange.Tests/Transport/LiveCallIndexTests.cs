using CsCheck;
using PageRange.Transport;

namespace PageRange.Tests.Transport;

/// <summary>
/// The live calls by the peer's id (<see cref="LiveCallIndex"/>, for cancel frames): the newest call of an id is found,
/// a freed one never is, whatever ids the peer picks (its own index bits reused, one id for every call, random ids).
/// </summary>
public sealed class LiveCallIndexTests
{
    [Fact]
    public void AddFindRemove_EqualIdsThenOthers_FindsTheNewestLiveCallOfAnIdAndNeverAFreedOne()
    {
        IncomingSlot?[] slots = MakeSlots(8);
        var index = new LiveCallIndex(slots, 8);
        Live(slots[0]!, 42);
        Live(slots[1]!, 42);
        Live(slots[2]!, 7);
        index.Add(slots[0]!, slots[0]!.Record.TransactionId);
        index.Add(slots[1]!, slots[1]!.Record.TransactionId);
        index.Add(slots[2]!, slots[2]!.Record.TransactionId);
        Assert.Equal(3, index.Count);
        Assert.Same(slots[1], index.Find(42));
        Assert.Same(slots[2], index.Find(7));
        Assert.Null(index.Find(43));

        // The older of two equal ids freed first: the newer stays found.
        Assert.True(index.Remove(slots[0]!));
        Assert.Same(slots[1], index.Find(42));
        Assert.True(index.Remove(slots[1]!));
        Assert.Null(index.Find(42));
        Assert.False(index.Remove(slots[1]!));
        Assert.Equal(1, index.Count);
        Assert.Same(slots[2], index.Find(7));
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public void Remove_EveryLiveCallUnderOneIdFreedOldestFirst_FindsTheNewestAtOnceAndWalksNoChain()
    {
        // A peer that sends every call under one id puts them all in one chain; freed oldest first (a server's usual
        // order), each removal used to walk the whole chain (found by review: 150 µs a free with 16,384 live).
        const int Count = 16_384;
        IncomingSlot?[] slots = MakeSlots(Count);
        var index = new LiveCallIndex(slots, Count);
        foreach (IncomingSlot? slot in slots)
        {
            Live(slot!, 42);
            index.Add(slot!, slot!.Record.TransactionId);
        }
        for (int i = 0; i < Count; i++)
        {
            Assert.Same(slots[^1], index.Find(42));
            Assert.True(index.Remove(slots[i]!));
            Assert.False(index.Remove(slots[i]!));
        }
        Assert.Equal(0, index.Count);
        Assert.Null(index.Find(42));
        // Every lookup found its call at a chain's head; a removal follows no link at all.
        Assert.Equal(0, index.ChainStepsForTest);
    }

    [Fact]
    public void RandomOperations_AnyIds_MatchAModelAfterEveryStep() =>
        // Ids from a small set (collisions and equal ids), from one slot's index bits with growing sequences (an
        // honest peer's reuse of a pending-call slot), and random 64-bit ones.
        Gen.Select(Gen.Int[0, 2], Gen.Select(Gen.Int[0, 3], Gen.Int[0, 63], Gen.ULong).Array[1, 300])
            .Sample((idKind, ops) => Run(idKind, ops), iter: 300, threads: 2);

    private static void Run(int idKind, (int Kind, int Pick, ulong Random)[] ops)
    {
        const int Capacity = 64;
        IncomingSlot?[] slots = MakeSlots(Capacity);
        var index = new LiveCallIndex(slots, Capacity);
        var free = new Stack<int>(Enumerable.Range(0, Capacity).Reverse());
        // The model: live calls in the order they were added.
        var live = new List<IncomingSlot>();
        ulong sequence = 0;
        foreach ((int kind, int pick, ulong random) in ops)
        {
            if (kind <= 1 && free.Count > 0)
            {
                IncomingSlot slot = slots[free.Pop()]!;
                ulong id = idKind switch
                {
                    0 => (ulong)(pick % 5),
                    1 => (++sequence << TransactionIds.PendingCallIndexBits) | (uint)(pick % 3),
                    _ => random,
                };
                Live(slot, id);
                index.Add(slot, slot.Record.TransactionId);
                live.Add(slot);
            }
            else if (kind == 2 && live.Count > 0)
            {
                IncomingSlot slot = live[pick % live.Count];
                Assert.True(index.Remove(slot));
                live.Remove(slot);
                free.Push(slot.Index);
            }
            Assert.Equal(live.Count, index.Count);
            foreach (ulong id in live.Select(slot => slot.Record.TransactionId).Append(random).Append((ulong)(pick % 5)))
            {
                Assert.Same(live.LastOrDefault(slot => slot.Record.TransactionId == id), index.Find(id));
            }
        }
        foreach (IncomingSlot slot in live)
        {
            Assert.True(index.Remove(slot));
        }
        Assert.Equal(0, index.Count);
    }

    private static IncomingSlot?[] MakeSlots(int count) =>
        Enumerable.Range(0, count).Select(i => (IncomingSlot?)new IncomingSlot(i)).ToArray();

    private static void Live(IncomingSlot slot, ulong id) => slot.Record = slot.Record with { TransactionId = id };
}
