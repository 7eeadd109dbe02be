using System.CommandLine;

namespace PageRange.Cli;

/// <summary>
/// The tool's command line: one subcommand per verb (<c>list</c>, <c>dump NAME</c>), <c>--help</c> everywhere, and a bad
/// argument reported as one line with exit code 2.
/// </summary>
internal static class PagerangeCommand
{
    /// <summary>The exit code of a bad command line.</summary>
    public const int UsageExitCode = 2;

    /// <summary>The root command with every verb.</summary>
    public static RootCommand Create() =>
        new("Inspects the PageRange listeners and connections of this machine.")
        {
            ListCommand.Create(),
            DumpCommand.Create(),
        };

    /// <summary>Parses and runs <paramref name="args"/>, writing to <paramref name="output"/> and <paramref name="error"/>.</summary>
    /// <returns>The exit code: 0, 1 for a failure the command reports, 2 for a bad command line; <c>dump</c> adds 3 (nobody
    /// listens on the name) and 4 (the server refused: diagnostics off, or another uid).</returns>
    public static int Invoke(string[] args, TextWriter output, TextWriter error)
    {
        ParseResult parse = Create().Parse(args);
        if (parse.Errors.Count > 0)
        {
            error.WriteLine($"error: {parse.Errors[0].Message.TrimEnd('.')}. See pagerange --help.");
            return UsageExitCode;
        }
        return parse.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
