using System.Runtime.InteropServices;

namespace PageRange.Threading;

/// <summary>
/// Where <see cref="Interlocked.MemoryBarrierProcessWide"/> can stand in for a fence on the other side of a Dekker pair:
/// a protocol whose frequent side stores and then loads with no fence between (the biased lock's owner, the reader
/// role's release) lets its rare side (a revoker, a dispose, a thread about to park) issue this barrier instead.
/// </summary>
internal static class ProcessWideBarrier
{
    /// <summary>
    /// Whether the barrier is a full fence on every core running a thread of the process: on x64 only. It is when the
    /// runtime makes it with membarrier, or with the page-protection trick on x64, whose TLB shootdown interrupts every
    /// core; on arm64 that trick flushes TLBs without interrupting other cores, and whether the runtime had membarrier is
    /// not ours to see, so there the frequent side keeps its fence.
    /// </summary>
    internal static readonly bool ReachesEveryCore = RuntimeInformation.ProcessArchitecture == Architecture.X64;
}
