"""Constraint expressions of a sweep: small, safe Python expressions over the axis names.

``reserved < counters(preset)``, ``not (partition and reserved == 0)``,
``host in ("graviton3", "grace")``.  Only literals, axis names, arithmetic, comparisons,
``and``/``or``/``not``, ``x if c else y`` and the functions in :data:`FUNCTIONS` are
allowed; anything else is refused when the sweep file loads (no ``eval`` of user text).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["FUNCTIONS", "ExprError", "compile_constraint", "evaluate"]


class ExprError(ValueError):
    """A constraint could not be evaluated at a point."""


def _preset(name: Any) -> Any:
    from pmupart.host.topology import get_preset

    try:
        return get_preset(str(name))
    except Exception as e:  # an unknown preset: say which
        raise ExprError(str(e)) from None


def _counters(name: Any) -> int:
    """The fewest general counters (PMCR_EL0.N) of any CPU of preset ``name``."""
    return int(min(p.num_counters for p in _preset(name).pmus()))


def _cpus(name: Any) -> int:
    """The number of CPUs of preset ``name``."""
    return len(_preset(name).cpus)


#: The functions a constraint may call.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "counters": _counters, "cpus": _cpus, "len": len, "min": min, "max": max, "abs": abs,
}

_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMP: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


_ALLOWED: tuple[type[ast.AST], ...] = (
    ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Compare, ast.IfExp, ast.Constant, ast.Tuple,
    ast.List, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, *_BIN, *_CMP)


def compile_constraint(text: str, names: Sequence[str]) -> ast.expr | str:
    """The checked expression tree of ``text``, or a message saying what is wrong."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        return f"not an expression: {e.msg}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names and node.id not in FUNCTIONS:
                from pmupart.errors import suggest
                return (f"unknown name {node.id!r}{suggest(node.id, [*names, *FUNCTIONS])}; "
                        f"axes: {', '.join(names)}; functions: {', '.join(FUNCTIONS)}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or \
                    node.keywords:
                return f"only these functions may be called: {', '.join(FUNCTIONS)}"
        elif not isinstance(node, _ALLOWED):
            return f"{type(node).__name__} is not allowed in a constraint"
    return tree


def evaluate(tree: ast.expr, env: Mapping[str, Any]) -> Any:
    """Evaluate a tree from :func:`compile_constraint` with the axis values ``env``."""
    try:
        return _eval(tree, env)
    except ExprError:
        raise
    except Exception as e:
        raise ExprError(f"{type(e).__name__}: {e}") from None


def _eval(n: ast.expr, env: Mapping[str, Any]) -> Any:
    if isinstance(n, ast.Constant):
        return n.value
    if isinstance(n, ast.Name):
        return env[n.id] if n.id in env else FUNCTIONS[n.id]
    if isinstance(n, ast.BoolOp):
        if isinstance(n.op, ast.And):
            return all(_eval(v, env) for v in n.values)
        return any(_eval(v, env) for v in n.values)
    if isinstance(n, ast.UnaryOp):
        v = _eval(n.operand, env)
        if isinstance(n.op, ast.Not):
            return not v
        return -v if isinstance(n.op, ast.USub) else +v
    if isinstance(n, ast.BinOp):
        return _BIN[type(n.op)](_eval(n.left, env), _eval(n.right, env))
    if isinstance(n, ast.Compare):
        left = _eval(n.left, env)
        for op, comp in zip(n.ops, n.comparators, strict=True):
            right = _eval(comp, env)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(n, ast.IfExp):
        return _eval(n.body, env) if _eval(n.test, env) else _eval(n.orelse, env)
    if isinstance(n, ast.Tuple | ast.List):
        return tuple(_eval(e, env) for e in n.elts)
    if isinstance(n, ast.Call):
        assert isinstance(n.func, ast.Name)
        return FUNCTIONS[n.func.id](*[_eval(a, env) for a in n.args])
    raise ExprError(f"{type(n).__name__} is not allowed")
