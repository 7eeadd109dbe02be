namespace PageRange.Tests.Infrastructure;

/// <summary>
/// A test whose second process runs as another uid (the TestHost's <c>--uid</c>: setgroups, setgid, setuid), which only
/// root may do: skipped, saying so, when the tests run as anyone else (the uid the kernel reports for a peer cannot be
/// another without one; CI runs as root and runs them).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (Interop.GetEffectiveUserId() != 0)
        {
            Skip = $"Runs a process as another uid, which needs root; these tests run as uid {Interop.GetEffectiveUserId()}.";
        }
    }
}
