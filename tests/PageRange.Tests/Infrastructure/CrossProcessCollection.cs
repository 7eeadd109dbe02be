namespace PageRange.Tests.Infrastructure;

/// <summary>
/// Every test that starts a TestHost joins this collection, so they run one at a time: descriptors one test's child
/// inherits must not leak into another test's child, and two processes busy at once would own both cores.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class CrossProcessCollection
{
    public const string Name = "CrossProcess";
}
