using System.Diagnostics;
using PageRange.Tests.Infrastructure;

namespace PageRange.Tests.Tools;

/// <summary>
/// Runs a program of this repository as a user would (<c>dotnet Program.dll args</c>), built beside the test assembly
/// in the same configuration, and returns its exit code and output. Kills it (and what it started) if it overruns.
/// </summary>
internal static class DotnetRun
{
    /// <inheritdoc cref="RepositoryPaths.BuiltAssembly"/>
    internal static string BuiltAssembly(string projectDirectory, string assemblyName) => RepositoryPaths.BuiltAssembly(projectDirectory, assemblyName);

    /// <summary>The benchmark harness built beside the test assembly (the test project references it), in the same configuration.</summary>
    internal static string BenchmarksAssembly => BuiltAssembly("benchmarks/PageRange.Benchmarks", "PageRange.Benchmarks.dll");

    /// <summary>
    /// Runs the benchmark harness with <paramref name="arguments"/>, waits up to <paramref name="timeout"/> (killing it and
    /// what it started after that), writes its output to the test's log, asserts it exited with 0, and returns its standard output.
    /// </summary>
    internal static async Task<string> RunBenchmarksAsync(ITestOutputHelper output, TimeSpan timeout, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(BenchmarksAssembly);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start.");
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        string standardOutput = await stdout;
        output.WriteLine(standardOutput);
        output.WriteLine(await stderr);
        Assert.Equal(0, process.ExitCode);
        return standardOutput;
    }

    /// <summary>Runs <c>dotnet</c> with <paramref name="arguments"/> and waits for it, within <see cref="TestTimeouts.Long"/>.</summary>
    internal static (int ExitCode, string Stdout, string Stderr) Run(ITestOutputHelper output, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start.");
        try
        {
            Task<string> stdout = process.StandardOutput.ReadToEndAsync();
            Task<string> stderr = process.StandardError.ReadToEndAsync();
            Assert.True(process.WaitForExit(TestTimeouts.Long), $"dotnet {string.Join(' ', arguments)} did not finish within the time limit.");
            process.WaitForExit();
            string outText = stdout.GetAwaiter().GetResult();
            string errText = stderr.GetAwaiter().GetResult();
            output.WriteLine($"dotnet {string.Join(' ', arguments)}: exit code {process.ExitCode}\n--- stdout\n{outText}--- stderr\n{errText}");
            return (process.ExitCode, outText, errText);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}
