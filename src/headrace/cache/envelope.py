"""Cached values: outputs in a typed JSON envelope, never pickles.

A Pydantic output comes back as the same model, a dataclass as the same
dataclass, a tuple as a tuple, a numpy array as an array. The class is found by
its module and name among the modules already imported; the cache never
imports a module on its own, so an entry in a shared cache cannot make the
process run code the user did not name.
"""

from __future__ import annotations

import base64
import dataclasses
import sys
from typing import Any

import orjson

from ..step import FILTERED

__all__ = ["EncodeError", "decode", "encode"]


class EncodeError(TypeError):
    """An output that cannot be stored in the cache."""


def encode(value: Any) -> bytes:
    """``value`` as envelope bytes.

    Raises:
        EncodeError: the value (or a part of it) has no JSON form.
    """
    try:
        return orjson.dumps(_wrap(value))
    except TypeError as exc:
        raise EncodeError(str(exc)) from None


def _wrap(value: Any) -> Any:
    if value is FILTERED:
        return {"t": "filtered"}
    if value is None or isinstance(value, bool | int | float | str):
        return {"t": "json", "v": value}
    if isinstance(value, tuple):
        return {"t": "tuple", "v": [_wrap(v) for v in value]}
    if isinstance(value, list):
        return {"t": "list", "v": [_wrap(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        return {"t": "dict", "v": {k: _wrap(v) for k, v in value.items()}}
    if isinstance(value, bytes):
        return {"t": "bytes", "v": base64.b64encode(value).decode()}
    kind = type(value)
    path = f"{kind.__module__}:{kind.__qualname__}"
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return {"t": "model", "c": path, "v": dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _wrap(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"t": "dataclass", "c": path, "v": fields}
    if kind.__module__ == "numpy" and hasattr(value, "tobytes") and hasattr(value, "dtype"):
        data = base64.b64encode(value.tobytes()).decode()
        return {"t": "ndarray", "d": str(value.dtype), "s": list(value.shape), "v": data}
    raise TypeError(f"a {kind.__name__} ({path}) has no JSON form")


def decode(data: bytes) -> Any:
    """Envelope bytes as the value they hold.

    Raises:
        LookupError: the value's class is in a module not imported in this process.
        ValueError: the bytes are not an envelope.
    """
    return _unwrap(orjson.loads(data))


def _unwrap(box: Any) -> Any:
    tag = box["t"]
    if tag == "filtered":
        return FILTERED
    if tag == "json":
        return box["v"]
    if tag == "tuple":
        return tuple(_unwrap(v) for v in box["v"])
    if tag == "list":
        return [_unwrap(v) for v in box["v"]]
    if tag == "dict":
        return {k: _unwrap(v) for k, v in box["v"].items()}
    if tag == "bytes":
        return base64.b64decode(box["v"])
    if tag == "model":
        return _class(box["c"]).model_validate(box["v"])
    if tag == "dataclass":
        return _class(box["c"])(**{k: _unwrap(v) for k, v in box["v"].items()})
    if tag == "ndarray":
        numpy = sys.modules.get("numpy")
        if numpy is None:
            raise LookupError("a cached numpy array, and numpy is not imported")
        flat = numpy.frombuffer(base64.b64decode(box["v"]), dtype=box["d"])
        return flat.reshape(box["s"]).copy()
    raise ValueError(f"not a cache envelope (tag {tag!r})")


def _class(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise LookupError(f"{path}: its module is not imported in this process")
    target: Any = module
    for part in qualname.split("."):
        if part.startswith("_") and part != qualname.split(".")[-1]:
            raise LookupError(f"{path}: not a class path the cache follows")
        target = getattr(target, part, None)
        if target is None:
            raise LookupError(f"{path}: no such class")
    if not isinstance(target, type):
        raise LookupError(f"{path}: not a class")
    return target
