global using PageRange;
global using Xunit;
