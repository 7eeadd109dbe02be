global using PageRange;
global using Xunit;
global using Xunit.Abstractions;
