using PageRange.Threading;

namespace PageRange.Tests.Infrastructure;

/// <summary>A test of <see cref="ThinLock"/>'s bias: skipped where locks are never biased (<see cref="ThinLock.CanBias"/>).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class BiasFactAttribute : FactAttribute
{
    public BiasFactAttribute()
    {
        if (!ThinLock.CanBias)
        {
            Skip = "ThinLock is biased on x64 only.";
        }
    }
}
