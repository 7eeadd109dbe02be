using System.CommandLine;
using System.Globalization;
using System.Numerics;

namespace PageRange.Benchmarks;

/// <summary>
/// How the benchmark commands read their values (System.CommandLine): numbers in the invariant culture with the rule
/// they break named in the message, comma lists, and one line on stderr with exit code 2 for a bad command line.
/// </summary>
internal static class OptionRules
{
    /// <summary>The exit code of a bad command line, as the shells' own builtins use.</summary>
    public const int UsageExitCode = 2;

    /// <summary>Writes the first parse error as one line and returns <see cref="UsageExitCode"/>; 0 when there is none.</summary>
    public static int ReportErrors(ParseResult parse, string command)
    {
        if (parse.Errors.Count == 0)
        {
            return 0;
        }
        Console.Error.WriteLine($"error: {parse.Errors[0].Message.TrimEnd('.')}. See {command} --help.");
        return UsageExitCode;
    }

    /// <summary>Whether the option was given on the command line (not just defaulted).</summary>
    public static bool IsGiven(this ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    /// <summary>A number above zero.</summary>
    public static Option<T> Positive<T>(Option<T> option)
        where T : struct, INumber<T> =>
        Number(option, value => value > T.Zero, "above zero");

    /// <summary>A number of zero or more.</summary>
    public static Option<T> NotNegative<T>(Option<T> option)
        where T : struct, INumber<T> =>
        Number(option, value => value >= T.Zero, "of zero or more");

    /// <summary>A comma list of sizes in bytes, each above zero: <c>64,1024,65536</c>.</summary>
    public static Option<int[]> Sizes(Option<int[]> option)
    {
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (text.Trim() == "none")
            {
                // That workload is skipped (the system-call count script streams oneways only).
                return [];
            }
            string[] items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var sizes = new int[items.Length];
            for (int i = 0; i < items.Length; i++)
            {
                if (!int.TryParse(items[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out sizes[i]) || sizes[i] <= 0)
                {
                    result.AddError($"{option.Name} takes a comma list of sizes in bytes above zero, and '{items[i]}' is not one");
                    return [];
                }
            }
            if (sizes.Length == 0)
            {
                result.AddError($"{option.Name} takes a comma list of sizes in bytes above zero (or none), not '{text}'");
            }
            return sizes;
        };
        return option;
    }

    /// <summary>A comma list of whole numbers, each above zero: <c>1,2,4,8</c>.</summary>
    public static Option<int[]> Counts(Option<int[]> option)
    {
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            string[] items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var counts = new int[items.Length];
            for (int i = 0; i < items.Length; i++)
            {
                if (!int.TryParse(items[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out counts[i]) || counts[i] <= 0)
                {
                    result.AddError($"{option.Name} takes a comma list of whole numbers above zero, and '{items[i]}' is not one");
                    return [];
                }
            }
            if (counts.Length == 0)
            {
                result.AddError($"{option.Name} takes a comma list of whole numbers above zero, not '{text}'");
            }
            return counts;
        };
        return option;
    }

    private static Option<T> Number<T>(Option<T> option, Func<T, bool> allowed, string rule)
        where T : struct, INumber<T>
    {
        // A parser of our own rather than a validator: the built-in conversion's message names a CLR type, and a
        // validator would run after a failed conversion too.
        option.CustomParser = result =>
        {
            string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
            if (T.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out T value) && allowed(value))
            {
                return value;
            }
            string kind = typeof(T) == typeof(double) ? "a number" : "a whole number";
            result.AddError($"{option.Name} takes {kind} {rule}, not '{text}'");
            return default;
        };
        return option;
    }
}
