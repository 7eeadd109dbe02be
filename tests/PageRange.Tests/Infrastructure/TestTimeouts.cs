namespace PageRange.Tests.Infrastructure;

/// <summary>Generous bounds: the CI machine has 2 shared cores and may be slow, but no test may hang.</summary>
internal static class TestTimeouts
{
    /// <summary>For a step that normally takes milliseconds.</summary>
    public static readonly TimeSpan Short = TimeSpan.FromSeconds(10);

    /// <summary>For a whole scenario, including starting a second process.</summary>
    public static readonly TimeSpan Long = TimeSpan.FromSeconds(60);
}
