using BenchmarkDotNet.Running;

namespace PageRange.Benchmarks;

/// <summary>Hands the arguments to BenchmarkDotNet, so <c>--filter</c>, <c>--job</c> and the rest work.</summary>
internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
