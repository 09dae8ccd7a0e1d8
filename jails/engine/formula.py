"""A jail's ``bantime.formula``: admin-written text, evaluated by walking its syntax tree, never eval()ed.

Plain Python. The jail's validators check it when it is saved (jails.validators); the ban policy
evaluates it for each ban with ``bantime.increment`` (bans.policy.next_bantime).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable
from typing import Any, TypeAlias

# A compiled formula: (ban.Time, ban.Count, banFactor) -> seconds.
Formula: TypeAlias = Callable[[float, int, float], float]

_MAX_FORMULA_LENGTH = 1000
_MAX_SHIFT = 1024  # 1 << 1024 is still a small number for Python; beyond, a typo or an attack
_MAX_ROUND_DIGITS = 15

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: math.pow(a, b),  # floats: an int power could take forever to compute
    ast.LShift: lambda a, b: _shift(operator.lshift, a, b),
    ast.RShift: lambda a, b: _shift(operator.rshift, a, b),
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
# The functions a fail2ban formula can reach (Python builtins and jail.py's `math`), with the
# number of arguments each takes.
_FUNCTIONS: dict[str, tuple[Callable[..., Any], range]] = {
    "min": (min, range(2, 100)),
    "max": (max, range(2, 100)),
    "abs": (abs, range(1, 2)),
    "float": (float, range(1, 2)),
    "int": (int, range(1, 2)),
    "round": (lambda x, digits=None: round(x, _round_digits(digits)), range(1, 3)),
    "math.exp": (math.exp, range(1, 2)),
    "math.log": (math.log, range(1, 3)),
    "math.log2": (math.log2, range(1, 2)),
    "math.log10": (math.log10, range(1, 2)),
    "math.sqrt": (math.sqrt, range(1, 2)),
    "math.pow": (math.pow, range(2, 3)),
    "math.floor": (math.floor, range(1, 2)),
    "math.ceil": (math.ceil, range(1, 2)),
}
_VALUES = ("ban.Time", "ban.Count", "banFactor")
_HINT = "a formula uses numbers, ban.Time, ban.Count, banFactor, + - * / // % ** << >>, comparisons, "
_HINT += "x if condition else y, and " + ", ".join(_FUNCTIONS)


def _shift(shift: Callable[[int, int], int], value: Any, places: Any) -> int:
    if not isinstance(value, int) or not isinstance(places, int):
        raise ValueError("<< and >> work on whole numbers only")
    if not 0 <= places <= _MAX_SHIFT:
        raise ValueError(f"a shift by {places} places is out of range (0 to {_MAX_SHIFT})")
    return shift(value, places)


def _round_digits(digits: Any) -> int | None:
    if digits is not None and (not isinstance(digits, int) or abs(digits) > _MAX_ROUND_DIGITS):
        raise ValueError(f"round() takes at most {_MAX_ROUND_DIGITS} digits")
    return None if digits is None else int(digits)


@functools.lru_cache(maxsize=64)
def compile_formula(text: str) -> Formula:
    """Check a ``bantime.formula`` and return it as a function; ValueError says what is wrong.

    Allowed: numbers, ``ban.Time``, ``ban.Count``, ``banFactor``, arithmetic (including fail2ban's
    ``<<``), comparisons, ``x if c else y`` and the functions fail2ban's formulas use (`_FUNCTIONS`).
    """
    if len(text) > _MAX_FORMULA_LENGTH:
        raise ValueError(f"bantime.formula is longer than {_MAX_FORMULA_LENGTH} characters.")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else "it cannot be read"
        raise ValueError(f"bantime.formula is not an expression: {detail}.") from None
    for node in ast.walk(tree):
        _check_formula_node(node)
    body = tree.body

    def formula(ban_time: float, ban_count: int, ban_factor: float) -> float:
        values = {"ban.Time": ban_time, "ban.Count": ban_count, "banFactor": ban_factor}
        failed = f"bantime.formula failed for ban.Count={ban_count}"
        try:
            return float(_evaluate(body, values))
        except OverflowError as exc:
            raise ValueError(f"{failed}: a number grew too large ({exc}).") from None
        except (ArithmeticError, LookupError, ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"{failed}: {exc}.") from None

    return formula


def _dotted(node: ast.AST) -> str | None:
    """``ban.Time`` for the tree of ``ban.Time``; None for anything but a name or name.attribute."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _check_formula_node(node: ast.AST) -> None:
    where = f" (column {node.col_offset + 1})" if isinstance(node, ast.expr) else ""
    if isinstance(node, ast.Constant):
        if type(node.value) not in (int, float):
            raise ValueError(f"bantime.formula: {node.value!r}{where} is not a number; {_HINT}.")
    elif isinstance(node, ast.Name | ast.Attribute):
        name = _dotted(node)
        prefix = isinstance(node, ast.Name) and name in ("ban", "math")  # checked again by the parent
        if name not in _VALUES and name not in _FUNCTIONS and not prefix:
            raise ValueError(f"bantime.formula: unknown name {ast.unparse(node)!r}{where}; {_HINT}.")
    elif isinstance(node, ast.Call):
        _check_call(node, where)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            raise ValueError(f"bantime.formula: the operator{where} is not allowed; {_HINT}.")
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise ValueError(f"bantime.formula: the operator{where} is not allowed; {_HINT}.")
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ValueError(f"bantime.formula: the comparison{where} is not allowed; {_HINT}.")
    elif not isinstance(node, ast.Expression | ast.IfExp | ast.Load | ast.operator | ast.unaryop | ast.cmpop):
        raise ValueError(f"bantime.formula: {type(node).__name__}{where} is not allowed; {_HINT}.")
    # A bare `ban` or `math` is only accepted as the left of ban.Time / math.exp, and a
    # function name only as the thing called: _evaluate refuses them anywhere else.
    if isinstance(node, ast.Expression) or (isinstance(node, ast.expr) and not isinstance(node, ast.Call)):
        for child in ast.iter_child_nodes(node):
            if _dotted(child) in _FUNCTIONS and not isinstance(node, ast.Attribute):
                raise ValueError(f"bantime.formula: {ast.unparse(child)} must be called{where}; {_HINT}.")
            if isinstance(child, ast.Name) and child.id in ("ban", "math") and not isinstance(node, ast.Attribute):
                raise ValueError(f"bantime.formula: {child.id} alone means nothing{where}; {_HINT}.")


def _check_call(node: ast.Call, where: str) -> None:
    name = _dotted(node.func)
    if name not in _FUNCTIONS:
        raise ValueError(f"bantime.formula: {ast.unparse(node.func)}(){where} is not allowed; {_HINT}.")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ValueError(f"bantime.formula: {name}(){where} takes plain arguments only.")
    if len(node.args) not in _FUNCTIONS[name][1]:
        raise ValueError(f"bantime.formula: {name}(){where} does not take {len(node.args)} argument(s).")
    for arg in node.args:  # a function or `ban` passed as a value: f(min), f(ban)
        if _dotted(arg) in _FUNCTIONS or (isinstance(arg, ast.Name) and arg.id in ("ban", "math")):
            raise ValueError(f"bantime.formula: {ast.unparse(arg)} is not a number{where}; {_HINT}.")


def _evaluate(node: ast.expr, values: dict[str, float]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name | ast.Attribute):
        return values[_dotted(node) or ""]
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.IfExp):  # only the branch taken is computed, as Python does
        branch = node.body if _evaluate(node.test, values) else node.orelse
        return _evaluate(branch, values)
    if isinstance(node, ast.Compare):
        return _compare(node, values)
    if isinstance(node, ast.Call):
        function = _FUNCTIONS[_dotted(node.func) or ""][0]
        return function(*(_evaluate(arg, values) for arg in node.args))
    raise ValueError(f"{type(node).__name__} is not allowed")  # _check_formula_node let it through


def _compare(node: ast.Compare, values: dict[str, float]) -> bool:
    left = _evaluate(node.left, values)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _evaluate(right_node, values)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True
