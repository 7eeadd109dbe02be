namespace PageRange.Cli;

/// <summary>The <c>pagerange</c> tool's entry point.</summary>
internal static class Program
{
    private static int Main(string[] args) => PagerangeCommand.Invoke(args, Console.Out, Console.Error);
}
