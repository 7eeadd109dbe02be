using System.Runtime.CompilerServices;

namespace PageRange.Transport;

/// <summary>The counts of <see cref="SpinBudget"/>'s log-bucket histogram, two bytes each, inline in the budget (no array, no allocation).</summary>
[InlineArray(SpinBudget.BucketCount)]
internal struct WaitHistogram
{
    private ushort _count;
}
