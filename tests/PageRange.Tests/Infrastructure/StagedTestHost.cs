using System.Runtime.Versioning;

namespace PageRange.Tests.Infrastructure;

/// <summary>
/// A copy of the TestHost's build output that any uid can read, for scenarios that drop privileges (<c>--uid</c>).
/// </summary>
/// <remarks>
/// A scenario that switches to another uid keeps loading assemblies after the switch (MessagePack the first time a
/// message is serialized, for one). If the clone sits under a directory that uid cannot read (root's home, a
/// <c>mktemp -d</c> directory), those loads fail with <see cref="FileNotFoundException"/> and the test waits for a line
/// that never comes. So such scenarios run from a staged copy: a directory under <c>/tmp</c> with mode 0755 and files
/// with mode 0644, made once per test run and deleted when the run ends. The runtime itself comes from the dotnet
/// installation, which every user can read.
/// </remarks>
[UnsupportedOSPlatform("windows")]
internal static class StagedTestHost
{
    private const UnixFileMode DirectoryMode =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
        UnixFileMode.GroupRead | UnixFileMode.GroupExecute |
        UnixFileMode.OtherRead | UnixFileMode.OtherExecute;

    private const UnixFileMode FileMode =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private static readonly Lazy<string> s_directory = new(Stage, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The staged TestHost assembly; staged on first use.</summary>
    public static string AssemblyPath => Path.Combine(s_directory.Value, Path.GetFileName(TestHostProcess.HostAssemblyPath));

    /// <summary>The staged directory, which the other uid can also use as its working directory.</summary>
    public static string DirectoryPath => s_directory.Value;

    private static string Stage()
    {
        string source = Path.GetDirectoryName(TestHostProcess.HostAssemblyPath)
            ?? throw new InvalidOperationException("The TestHost assembly has no directory.");
        // /tmp rather than $TMPDIR: the point is a place every uid can reach, and /tmp is world-traversable by convention.
        string root = Directory.Exists("/tmp") ? "/tmp" : Path.GetTempPath();
        string target = Path.Combine(root, $"pagerange-testhost-{Environment.ProcessId}-{Guid.NewGuid():N}");
        CopyTree(source, target);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(target);
        return target;
    }

    private static void CopyTree(string source, string target)
    {
        Directory.CreateDirectory(target);
        // Explicitly, not through mkdir's mode argument, which the umask narrows.
        File.SetUnixFileMode(target, DirectoryMode);
        foreach (string file in Directory.EnumerateFiles(source))
        {
            string copy = Path.Combine(target, Path.GetFileName(file));
            File.Copy(file, copy, overwrite: true);
            File.SetUnixFileMode(copy, FileMode);
        }
        foreach (string directory in Directory.EnumerateDirectories(source))
        {
            CopyTree(directory, Path.Combine(target, Path.GetFileName(directory)));
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort at exit: a leftover copy in /tmp is harmless and the OS cleans /tmp.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }
}
