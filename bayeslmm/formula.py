"""Split an lme4-style formula into its fixed part and its random-effects terms.

formulae parses the fixed part (and the per-term design of each random-effects
expression), but it has no ``||`` and it splits ``(1 + x | g)`` into separate terms.
So the random terms are cut out of the formula string here, at the top level, before
formulae sees anything, and each keeps its own expression, grouping factor(s) and
whether it was written with ``||``.

Grouping syntax follows lme4: ``(e | a/b)`` is ``(e | a) + (e | a:b)``; ``a:b`` is the
interaction factor of a and b (the combinations present in the data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula", "check_safe", "ALLOWED_CALLS"]

_NAME = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")

# The only functions a formula may call (docs/formulas.md): formulae's transformations and
# numpy's elementwise math.  Formulas are evaluated, and a saved fit stores its formula, so
# anything else (``np.save(...)``, ``__import__``) is refused before evaluation.
G_PATTERN_CALLS = ("us", "diag", "cs", "ar1")   # covariance patterns of a random term
ALLOWED_CALLS = frozenset({
    *G_PATTERN_CALLS, "C", "I", "scale", "center", "standardize", "offset", "poly", "bs", "cr",
    "cc", "abs",
    *(f"np.{name}" for name in (
        "log", "log1p", "log2", "log10", "exp", "expm1", "sqrt", "cbrt", "square", "abs",
        "absolute", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
        "arcsinh", "arccosh", "arctanh", "power", "sign", "floor", "ceil", "round",
        "clip", "maximum", "minimum")),
})
ALLOWED_NAMES = frozenset({"np.pi", "np.e"})
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*\(")
_STRING = re.compile(r"(\"[^\"]*\"|'[^']*')")


def check_safe(formula: str) -> None:
    """Raise ValueError unless every function the formula calls is in ``ALLOWED_CALLS``
    and it names no other dotted attribute (``np.save``, ``os.system``, ``x.__class__``)."""
    code = _STRING.sub("''", formula)  # C(g, levels=['a', 'b']): strings are data
    if "__" in code or "lambda" in code.split() or ";" in code:
        raise ValueError(f"could not parse formula {formula!r}: it may only use column names, "
                         "operators and the functions listed in docs/formulas.md")
    for match in _CALL.finditer(code):
        name = re.sub(r"\s+", "", match.group(1))
        if name not in ALLOWED_CALLS:
            raise ValueError(
                f"formula {formula!r} calls {name}(), which is not one of the allowed "
                f"transformations: {', '.join(sorted(ALLOWED_CALLS))} (docs/formulas.md)")
    for match in _DOTTED.finditer(code):
        name = re.sub(r"\s+", "", match.group(0))
        if name not in ALLOWED_CALLS and name not in ALLOWED_NAMES:
            raise ValueError(f"formula {formula!r} uses {name!r}: only the functions in "
                             "docs/formulas.md and column names may appear in a formula")


@dataclass(frozen=True)
class RandomTerm:
    """One ``(expr | group)`` term after ``/`` expansion.

    Attributes
    ----------
    expr : str
        The left-hand side, e.g. ``"1 + Days"`` or ``"0 + f"``.
    group : tuple of str
        Column names whose interaction is the grouping factor (one name for ``(e|g)``,
        two for ``(e|a:b)``).
    independent : bool
        True for ``||``: every formula term of ``expr`` becomes its own block (lme4's
        ``expandDoubleVerts``).
    source : str
        The term as written, for messages.
    structure : str
        The covariance pattern written around the term: ``us`` (default, ``(x | g)``),
        ``diag``, ``cs`` or ``ar1`` (``cs(1 + x | g)``).
    """

    expr: str
    group: tuple[str, ...]
    independent: bool
    source: str
    structure: str = "us"

    @property
    def factor_name(self) -> str:
        return ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    """The formula split in three: response, fixed part, random terms."""

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...] = ()


def _matching_paren(text: str, start: int, formula: str) -> int:
    depth = 0
    for pos in range(start, len(text)):
        if text[pos] == "(":
            depth += 1
        elif text[pos] == ")":
            depth -= 1
            if depth == 0:
                return pos
    raise ValueError(f"could not parse formula {formula!r}: unbalanced parentheses")


def _top_level_bar(inner: str) -> tuple[int, int] | None:
    """Position and width of the top-level ``|`` or ``||`` in ``inner``."""
    depth = 0
    for pos, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            width = 2 if inner[pos:pos + 2] == "||" else 1
            return pos, width
    return None


def _expand_group(group: str, source: str, formula: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (a, b), (a, b, c)]; ``a:b`` -> [(a, b)]."""
    nested = [part.strip() for part in group.split("/")]
    result = []
    prefix: list[str] = []
    for part in nested:
        names = [name.strip() for name in part.split(":")]
        for name in names:
            if not _NAME.match(name):
                raise ValueError(
                    f"could not parse formula {formula!r}: grouping factor {name!r} in "
                    f"{source!r} must be a column name (or a:b, a/b of column names)"
                )
        prefix = prefix + names
        result.append(tuple(prefix))
    return result


def parse_formula(formula: str) -> ParsedFormula:
    """Split ``formula`` into response, fixed part and random-effects terms.

    Parameters
    ----------
    formula : str
        lme4/brms-style formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    ValueError
        When there is no ``~``, no response, unbalanced parentheses or a malformed
        random-effects term.
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string, got {type(formula).__name__}")
    check_safe(formula)
    if formula.count("~") != 1:
        raise ValueError(
            f"could not parse formula {formula!r}: expected exactly one '~' "
            "separating the response from the predictors"
        )
    lhs, rhs = (side.strip() for side in formula.split("~"))
    if not lhs:
        raise ValueError(f"could not parse formula {formula!r}: no response before '~'")
    if not rhs:
        raise ValueError(f"could not parse formula {formula!r}: nothing after '~'")

    random: list[RandomTerm] = []
    fixed_parts: list[str] = []
    pos = 0
    while pos < len(rhs):
        char = rhs[pos]
        if char == ")":
            raise ValueError(f"could not parse formula {formula!r}: unbalanced parentheses")
        if char != "(":
            fixed_parts.append(char)
            pos += 1
            continue
        end = _matching_paren(rhs, pos, formula)
        inner = rhs[pos + 1:end]
        preceding = "".join(fixed_parts).rstrip()
        structure = "us"
        pattern = re.search(r"(?:^|[^A-Za-z0-9_.])(" + "|".join(G_PATTERN_CALLS) + r")$",
                            preceding)
        if pattern is not None and _top_level_bar(inner) is not None:
            structure = pattern.group(1)   # cs(1 + x | g): a G pattern around a random term
            preceding = preceding[: pattern.start(1)].rstrip()
        else:
            pattern = None
        is_call = pattern is None and bool(preceding) and (
            preceding[-1].isalnum() or preceding[-1] in "_.")
        while not is_call and inner.strip().startswith("(") and _matching_paren(
                inner.strip(), 0, formula) == len(inner.strip()) - 1:
            inner = inner.strip()[1:-1]  # ((1 | g)) is (1 | g), as in lme4
        bar = None if is_call else _top_level_bar(inner)
        if bar is None:
            fixed_parts.append(rhs[pos:end + 1])
        else:
            at, width = bar
            expr, group = inner[:at].strip(), inner[at + width:].strip()
            source = rhs[pos:end + 1]
            if not expr or not group:
                raise ValueError(
                    f"could not parse formula {formula!r}: random-effects term {source!r} "
                    "needs an expression and a grouping factor, as in (1 | g)"
                )
            if pattern is not None:
                source = f"{pattern.group(1)}{source}"
                if width == 2:
                    raise ValueError(f"could not parse formula {formula!r}: {source!r} combines "
                                     "a covariance pattern with '||'; write diag(x | g)")
            for names in _expand_group(group, source, formula):
                random.append(RandomTerm(expr, names, width == 2, source, structure))
            # drop the '+' that joined this term to the fixed part
            stripped = preceding
            if stripped.endswith("+"):
                stripped = stripped[:-1]
            fixed_parts = [stripped]
        pos = end + 1

    fixed = "".join(fixed_parts).strip()
    if _top_level_bar(_STRING.sub("''", fixed)) is not None:
        raise ValueError(
            f"could not parse formula {formula!r}: a '|' outside a random-effects term "
            f"({fixed!r}); write random terms in parentheses, as in (x | g)")
    fixed, offsets = _split_offsets(fixed, formula)
    fixed = re.sub(r"^\s*\+", "", fixed).strip()
    if not fixed:
        fixed = "1"
    elif fixed in ("0", "-1") or re.fullmatch(r"0\s*\+?\s*|-\s*1", fixed):
        fixed = "0"
    return ParsedFormula(formula, lhs, fixed, tuple(random), offsets)


def _split_offsets(fixed: str, formula: str) -> tuple[str, tuple[str, ...]]:
    """Cut top-level ``offset(expr)`` terms out of the fixed part (lme4's meaning: a known
    term with coefficient 1, not a predictor)."""
    offsets: list[str] = []
    while True:
        match = re.search(r"(^|\+)\s*offset\s*\(", fixed)
        if match is None:
            break
        open_at = fixed.index("(", match.start() + len(match.group(1)))
        close_at = _matching_paren(fixed, open_at, formula)
        expr = fixed[open_at + 1:close_at].strip()
        if not expr:
            raise ValueError(f"could not parse formula {formula!r}: offset() needs a column")
        offsets.append(expr)
        fixed = (fixed[:match.start()] + fixed[close_at + 1:]).strip()
    if re.search(r"\boffset\s*\(", fixed):
        raise ValueError(f"could not parse formula {formula!r}: offset() must be a term of "
                         "its own (y ~ x + offset(log(t)) + (1 | g))")
    return fixed, tuple(offsets)
