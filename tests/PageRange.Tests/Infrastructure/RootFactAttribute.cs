namespace PageRange.Tests.Infrastructure;

/// <summary>
/// A test that needs root: by default one whose second process runs as another uid (the TestHost's <c>--uid</c>:
/// setgroups, setgid, setuid), or, as <paramref name="needs"/> says, one that gives a file to another uid. Skipped,
/// saying so, when the tests run as anyone else (CI runs as root and runs them).
/// </summary>
/// <param name="needs">What the test does that only root may.</param>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RootFactAttribute(string needs = "Runs a process as another uid") : FactAttribute
{
    /// <inheritdoc/>
    public override string? Skip
    {
        get => base.Skip ?? (Interop.GetEffectiveUserId() != 0
            ? $"{needs}, which needs root; these tests run as uid {Interop.GetEffectiveUserId()}."
            : null);
        set => base.Skip = value;
    }
}
