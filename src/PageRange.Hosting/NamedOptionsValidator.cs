using Microsoft.Extensions.Options;

namespace PageRange.Hosting;

/// <summary>Checks the named options of one server or client, with messages that name it and the setting.</summary>
/// <typeparam name="TOptions">The options type.</typeparam>
internal sealed class NamedOptionsValidator<TOptions>(string name, Func<TOptions, string, List<string>> validate) : IValidateOptions<TOptions>
    where TOptions : class
{
    public ValidateOptionsResult Validate(string? name1, TOptions options)
    {
        if (!string.Equals(name1, name, StringComparison.Ordinal))
        {
            return ValidateOptionsResult.Skip;
        }
        List<string> errors = validate(options, name);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
