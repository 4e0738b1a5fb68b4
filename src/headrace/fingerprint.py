"""What decides a step's results, hashed: the basis of its fingerprint.

Steps hash their code with :func:`code_hash`; :attr:`headrace.Step.fingerprint`
combines that with the step's name, version and children.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = ["code_hash"]


def code_hash(fn: Callable[..., Any]) -> str:
    """Hash a function's code, ignoring decorators, comments, docstring and formatting.

    Falls back to the compiled code object when the source is not available.
    """
    target = fn
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(fn)
    try:
        source = textwrap.dedent(inspect.getsource(target))
        tree = ast.parse(source)
        node = tree.body[0]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.decorator_list = []
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        text = ast.unparse(node)
    except (OSError, TypeError, SyntaxError, IndexError):
        code = getattr(target, "__code__", None)
        text = repr((code.co_code, code.co_consts, code.co_names)) if code else repr(target)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
