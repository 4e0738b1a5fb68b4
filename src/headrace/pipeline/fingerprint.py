"""What decides a step's results, hashed: the basis of its fingerprint.

Steps hash their code with :func:`code_hash`; :attr:`headrace.Step.fingerprint`
combines that with the step's name, version and children.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable
from typing import Any

__all__ = ["code_hash", "leaf_identities"]


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


def leaf_identities(root: Any) -> dict[str, dict[str, str]]:
    """What decides each leaf step's results, by step name, in a few words each.

    Stored with a durable run, so that a resume refused for a changed pipeline can
    name what changed (``step 'tone': endpoint 'http://a' then, 'http://b' now``, by
    :func:`headrace.store.identities.identity_changes`).
    Short text values are kept as they are; longer ones (prompts, schemas, code)
    as a short hash.
    """
    leaves: dict[str, dict[str, str]] = {}
    stack = [root]
    seen: set[int] = set()
    while stack:
        step = stack.pop()
        if id(step) in seen:
            continue
        seen.add(id(step))
        children = step.children()
        if children:
            stack.extend(reversed(children))
            continue
        name = step.name
        while name in leaves:
            name += "'"
        leaves[name] = {
            str(part): _short(value) for part, value in sorted(step._identity().items())
        }
    return leaves


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    if len(text) <= 80:
        return text
    return "#" + hashlib.sha256(text.encode()).hexdigest()[:12]
