using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit.Abstractions;

namespace PageRange.Tests.Infrastructure;

/// <summary>
/// A running <c>tests/PageRange.TestHost</c> process: started with a scenario name, its stdout read line by line,
/// its stderr copied into the test output, and killed by process id in <see cref="Dispose"/>.
/// </summary>
internal sealed class TestHostProcess : IDisposable
{
    private readonly Process _process;
    private readonly BlockingCollection<string> _lines = [];
    private readonly ITestOutputHelper? _output;

    private TestHostProcess(Process process, ITestOutputHelper? output)
    {
        _process = process;
        _output = output;
    }

    /// <summary>The child's process id.</summary>
    public int Id => _process.Id;

    /// <summary>Starts the TestHost with <paramref name="scenario"/> and its arguments.</summary>
    /// <remarks>A scenario that drops to another uid (<c>--uid</c>) runs from a copy that uid can read (<see cref="StagedTestHost"/>).</remarks>
    public static TestHostProcess Start(ITestOutputHelper? output, string scenario, params string[] arguments)
    {
        var startInfo = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // No diagnostic server in the host: the runtime makes its IPC socket and debugger pipes in the temp directory
        // (dotnet-diagnostic-<pid>-*, clr-debug-pipe-<pid>-*) and removes them only on a clean exit, so every host a
        // test kills left three files behind (about 230 per suite run). The variable reaches the host's own children.
        startInfo.Environment["DOTNET_EnableDiagnostics"] = "0";
        // The same gen0 budget (16 MiB) on every machine: the runtime sizes it from the L3 cache, 4/5 of it, so on a
        // Xeon with 260 MiB of L3 a host collected only every ~200 MiB of garbage, and a test that bounds a host's memory
        // (a 100 MiB gRPC stream to a slow reader) saw the stream's read messages, not yet collected, as growth (+85 MiB
        // against +28 MiB with this budget).
        startInfo.Environment["DOTNET_GCgen0size"] = "0x1000000";
        string hostAssembly = HostAssemblyPath;
        if (!OperatingSystem.IsWindows() && arguments.Contains("--uid", StringComparer.Ordinal))
        {
            hostAssembly = StagedTestHost.AssemblyPath;
            // Our working directory may be one the other uid cannot enter.
            startInfo.WorkingDirectory = StagedTestHost.DirectoryPath;
        }
        startInfo.ArgumentList.Add(hostAssembly);
        startInfo.ArgumentList.Add(scenario);
        foreach (string argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        Process process = Process.Start(startInfo) ?? throw new InvalidOperationException("dotnet did not start.");
        var host = new TestHostProcess(process, output);
        process.OutputDataReceived += (_, e) =>
        {
            try
            {
                if (e.Data is null)
                {
                    host._lines.CompleteAdding();
                }
                else
                {
                    host._lines.Add(e.Data);
                }
            }
            catch (Exception error) when (error is ObjectDisposedException or InvalidOperationException)
            {
                // A line that arrives while the test disposes the host: thrown here, on a pool thread, it would crash
                // the whole test run.
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                host.Log($"[testhost {process.Id} stderr] {e.Data}");
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>The TestHost assembly built beside this test assembly, in the same configuration.</summary>
    public static string HostAssemblyPath => RepositoryPaths.BuiltAssembly("tests/PageRange.TestHost", "PageRange.TestHost.dll");

    /// <summary>Sends one line to the child's stdin.</summary>
    public void WriteLine(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>Waits for the next stdout line; fails the test if none comes within <paramref name="timeout"/>.</summary>
    public string ReadLine(TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? TestTimeouts.Long;
        if (!_lines.TryTake(out string? line, limit))
        {
            throw new TimeoutException($"The TestHost wrote no line within {limit} (exited: {_process.HasExited}).");
        }
        Log($"[testhost {_process.Id} stdout] {line}");
        return line;
    }

    /// <summary>Reads lines until one starts with <paramref name="prefix"/> and returns the rest of it.</summary>
    public string ReadUntil(string prefix, TimeSpan? timeout = null)
    {
        var clock = Stopwatch.StartNew();
        TimeSpan limit = timeout ?? TestTimeouts.Long;
        while (true)
        {
            TimeSpan left = limit - clock.Elapsed;
            string line = ReadLine(left > TimeSpan.Zero ? left : TimeSpan.Zero);
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                return line[prefix.Length..];
            }
        }
    }

    /// <summary>Waits for the child to exit and returns its exit code.</summary>
    public int WaitForExit(TimeSpan? timeout = null)
    {
        TimeSpan limit = timeout ?? TestTimeouts.Long;
        if (!_process.WaitForExit(limit))
        {
            throw new TimeoutException($"The TestHost did not exit within {limit}.");
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>Kills the child with SIGKILL, as a crash would.</summary>
    public void Kill()
    {
        try
        {
            Process.GetProcessById(_process.Id).Kill(entireProcessTree: true);
        }
        catch (ArgumentException)
        {
            // Already gone.
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        _process.WaitForExit(TestTimeouts.Short);
    }

    private void Log(string message)
    {
        try
        {
            _output?.WriteLine(message);
        }
        catch (InvalidOperationException)
        {
            // The test has finished; its output is closed.
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Kill();
        }
        _process.Dispose();
        _lines.Dispose();
    }
}
