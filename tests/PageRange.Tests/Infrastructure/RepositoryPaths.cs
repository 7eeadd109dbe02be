namespace PageRange.Tests.Infrastructure;

/// <summary>Where this repository and the programs built beside the test assembly are, found from the test assembly's own folder.</summary>
internal static class RepositoryPaths
{
    /// <summary>The folder holding PageRange.sln above this test assembly.</summary>
    internal static string Root
    {
        get
        {
            for (DirectoryInfo? directory = new(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
            {
                if (File.Exists(Path.Combine(directory.FullName, "PageRange.sln")))
                {
                    return directory.FullName;
                }
            }
            throw new InvalidOperationException($"No PageRange.sln above {AppContext.BaseDirectory}.");
        }
    }

    /// <summary>
    /// The assembly of the project in <paramref name="projectDirectory"/> (relative to the repository, with '/'), built in
    /// the configuration and framework of this test assembly (the test project references it, so it is built first).
    /// </summary>
    internal static string BuiltAssembly(string projectDirectory, string assemblyName)
    {
        string baseDirectory = AppContext.BaseDirectory;
        char slash = Path.DirectorySeparatorChar;
        string marker = $"{slash}tests{slash}PageRange.Tests{slash}bin{slash}";
        int at = baseDirectory.LastIndexOf(marker, StringComparison.Ordinal);
        if (at < 0)
        {
            throw new InvalidOperationException($"Cannot find {assemblyName} relative to {baseDirectory}.");
        }
        return Path.Combine(
            string.Concat(baseDirectory.AsSpan(0, at + 1), projectDirectory.Replace('/', slash), $"{slash}bin{slash}", baseDirectory.AsSpan(at + marker.Length)),
            assemblyName);
    }
}
