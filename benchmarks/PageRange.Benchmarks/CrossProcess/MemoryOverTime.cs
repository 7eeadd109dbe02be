namespace PageRange.Benchmarks.CrossProcess;

internal static class MemoryOverTime
{
    public static Task<int> RunAsync(string[] args) => Task.FromResult(args.Length);
}
