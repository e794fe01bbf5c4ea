using System.Numerics;

namespace Engine.Tasks;

/// <summary>An exact rational number (BigInteger numerator and positive denominator, in lowest terms).</summary>
internal readonly record struct Rational
{
    private Rational(BigInteger numerator, BigInteger denominator)
    {
        Numerator = numerator;
        Denominator = denominator;
    }

    /// <summary>The numerator (carries the sign).</summary>
    public BigInteger Numerator { get; }

    /// <summary>The denominator (always positive).</summary>
    public BigInteger Denominator { get; }

    /// <summary>Whether the value is 0.</summary>
    public bool IsZero => Numerator.IsZero;

    /// <summary>The integer <paramref name="value"/>.</summary>
    public static Rational Of(BigInteger value) => new(value, BigInteger.One);

    /// <summary>Whether the value equals the integer <paramref name="value"/>.</summary>
    public bool EqualsInteger(long value) => Denominator.IsOne && Numerator == value;

    /// <summary>Applies '+', '-', '*' or '/' (the divisor must not be 0).</summary>
    public static Rational Apply(char op, Rational x, Rational y) => op switch
    {
        '+' => Make((x.Numerator * y.Denominator) + (y.Numerator * x.Denominator), x.Denominator * y.Denominator),
        '-' => Make((x.Numerator * y.Denominator) - (y.Numerator * x.Denominator), x.Denominator * y.Denominator),
        '*' => Make(x.Numerator * y.Numerator, x.Denominator * y.Denominator),
        '/' when !y.IsZero => Make(x.Numerator * y.Denominator, x.Denominator * y.Numerator),
        '/' => throw new DivideByZeroException(),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "not an arithmetic operator"),
    };

    private static Rational Make(BigInteger n, BigInteger d)
    {
        if (d.Sign < 0)
        {
            n = -n;
            d = -d;
        }

        BigInteger g = BigInteger.GreatestCommonDivisor(n, d);
        return g.IsOne || g.IsZero ? new Rational(n, d) : new Rational(n / g, d / g);
    }

    /// <inheritdoc/>
    public override string ToString() => Denominator.IsOne ? Numerator.ToString() : $"{Numerator}/{Denominator}";
}

/// <summary>What checking an arithmetic expression found, in the order the checks apply.</summary>
internal enum ExpressionVerdict
{
    /// <summary>Not an expression of the grammar (bad character, bad syntax, unbalanced parentheses, empty...).</summary>
    Malformed,

    /// <summary>Well-formed, but its numbers are not exactly the given multiset.</summary>
    WrongNumbers,

    /// <summary>Well-formed with the right numbers, but it divides by zero.</summary>
    DivisionByZero,

    /// <summary>Well-formed with the right numbers; the value is in the result.</summary>
    Evaluated,
}

/// <summary>
/// Checks and evaluates an arithmetic expression exactly, for the countdown task.
/// </summary>
/// <remarks>
/// Grammar (whitespace allowed between tokens; no unary operators, no decimals):
/// <code>
/// expr   := term (('+' | '-') term)*
/// term   := factor (('*' | '/') factor)*
/// factor := number | '(' expr ')'
/// number := '0' | [1-9][0-9]*          (no leading zeros)
/// </code>
/// Operators are left-associative with the usual precedence. Evaluation is exact rational
/// arithmetic (intermediate values may be fractions or negative). Parentheses may nest at most
/// <see cref="MaxDepth"/> deep. Evaluation stops (parsing goes on) once the expression has more
/// numbers than given, so arbitrary input costs time linear in its length.
/// </remarks>
internal ref struct ArithmeticExpression
{
    /// <summary>Deepest parenthesis nesting accepted.</summary>
    public const int MaxDepth = 64;

    private readonly ReadOnlySpan<char> _text;
    private readonly int _maxNumbers;
    private readonly List<long> _numbers;
    private int _pos;
    private int _depth;
    private bool _malformed;
    private bool _divisionByZero;
    private bool _overlong;

    private ArithmeticExpression(ReadOnlySpan<char> text, int maxNumbers)
    {
        _text = text;
        _maxNumbers = maxNumbers;
        _numbers = new List<long>(maxNumbers + 1);
    }

    /// <summary>Whether evaluation is still on (the numbers seen so far fit the given count, none is over-long, no division by zero).</summary>
    private readonly bool Evaluating => _numbers.Count <= _maxNumbers && !_divisionByZero && !_overlong;

    /// <summary>
    /// Checks <paramref name="text"/> against the given <paramref name="numbers"/> (each must be used
    /// exactly once: the sorted multiset of the expression's numbers equals the sorted given numbers)
    /// and evaluates it.
    /// </summary>
    public static ExpressionVerdict Check(ReadOnlySpan<char> text, ReadOnlySpan<long> numbers, out Rational value)
    {
        var e = new ArithmeticExpression(text, numbers.Length);
        value = default;
        e.SkipSpace();
        Rational v = e.ParseExpr();
        e.SkipSpace();
        if (e._malformed || e._pos != e._text.Length)
        {
            return ExpressionVerdict.Malformed;
        }

        if (e._numbers.Count != numbers.Length)
        {
            return ExpressionVerdict.WrongNumbers;
        }

        long[] given = numbers.ToArray();
        Array.Sort(given);
        e._numbers.Sort();
        for (int i = 0; i < given.Length; i++)
        {
            if (e._numbers[i] != given[i])
            {
                return ExpressionVerdict.WrongNumbers;
            }
        }

        if (e._divisionByZero)
        {
            return ExpressionVerdict.DivisionByZero;
        }

        value = v;
        return ExpressionVerdict.Evaluated;
    }

    private Rational ParseExpr()
    {
        Rational acc = ParseTerm();
        while (!_malformed && Peek() is '+' or '-')
        {
            char op = _text[_pos++];
            SkipSpace();
            Rational rhs = ParseTerm();
            acc = Combine(op, acc, rhs);
        }

        return acc;
    }

    private Rational ParseTerm()
    {
        Rational acc = ParseFactor();
        while (!_malformed && Peek() is '*' or '/')
        {
            char op = _text[_pos++];
            SkipSpace();
            Rational rhs = ParseFactor();
            acc = Combine(op, acc, rhs);
        }

        return acc;
    }

    private Rational ParseFactor()
    {
        if (_malformed)
        {
            return default;
        }

        char c = Peek();
        if (c == '(')
        {
            if (++_depth > MaxDepth)
            {
                _malformed = true;
                return default;
            }

            _pos++;
            SkipSpace();
            Rational inner = ParseExpr();
            if (_malformed || Peek() != ')')
            {
                _malformed = true;
                return default;
            }

            _pos++;
            _depth--;
            SkipSpace();
            return inner;
        }

        if (!char.IsAsciiDigit(c))
        {
            _malformed = true;
            return default;
        }

        int start = _pos;
        while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos]))
        {
            _pos++;
        }

        ReadOnlySpan<char> digits = _text[start.._pos];
        SkipSpace();
        if (digits.Length > 1 && digits[0] == '0')
        {
            _malformed = true;
            return default;
        }

        if (_numbers.Count > _maxNumbers)
        {
            return default; // too many numbers already: the verdict is WrongNumbers (or Malformed); evaluation is off
        }

        // A literal too long for a long matches no given number: record -1 (never given) and stop evaluating.
        long n = TaskRandom.TryParseCanonical(digits, out long parsed) ? parsed : -1;
        _numbers.Add(n);
        _overlong |= n < 0;
        return n < 0 ? default : Rational.Of(n);
    }

    private Rational Combine(char op, Rational x, Rational y)
    {
        if (_malformed || !Evaluating)
        {
            return default;
        }

        if (op == '/' && y.IsZero)
        {
            _divisionByZero = true;
            return default;
        }

        return Rational.Apply(op, x, y);
    }

    private readonly char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

    private void SkipSpace()
    {
        while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos]))
        {
            _pos++;
        }
    }
}
