"""Cache keys: ``sha256(fingerprint + canonical encoding of the input)``.

The canonical encoding gives equal inputs equal bytes: dicts by sorted keys,
Pydantic models and dataclasses by their class name (never its module, so a
script run as ``__main__`` and the same file imported share keys) and fields,
sets sorted, numpy arrays by dtype, shape and data; and different inputs different
bytes (every value is tagged with its kind, so ``1``, ``1.0``, ``"1"`` and ``True``
differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import string
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["canonical", "normalise_text", "timestamp_field"]

_SPACES = re.compile(r"\s+")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_TIME_NAME = re.compile(
    r"(^|_)(ts|time|timestamp|datetime|date|created|updated|modified|fetched|seen)(_at)?$"
    r"|_at$|^at$",
    re.IGNORECASE,
)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def canonical(value: Any) -> bytes:
    """The canonical bytes of ``value``.

    Raises:
        TypeError: a value of a kind with no canonical form (the message names it).
    """
    return orjson.dumps(_plain(value), option=orjson.OPT_SORT_KEYS)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value if not isinstance(value, bool) else ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, Mapping):
        return [
            "dict",
            {str(k) if isinstance(k, str) else repr(k): _plain(v) for k, v in value.items()},
        ]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_plain(v) for v in value]]
    if isinstance(value, set | frozenset):
        return ["set", sorted(canonical(v).decode() for v in value)]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        kind = type(value)
        return ["model", kind.__qualname__, _plain(dump(mode="json"))]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return ["dataclass", kind.__qualname__, _plain(fields)]
    if type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
        digest = hashlib.sha256(value.tobytes()).hexdigest()
        return ["ndarray", str(value.dtype), list(value.shape), digest]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    raise TypeError(f"a {type(value).__name__} has no canonical form for a cache key")


def normalise_text(value: Any) -> Any:
    """A ready ``key=`` function: text lower-cased, whitespace collapsed, punctuation
    dropped, so ``"Hello,  World!"`` and ``"hello world"`` share a cache entry.

    Strings are normalised; in a dict, Pydantic model or dataclass, every string
    field is; anything else is left as it is.
    """
    if isinstance(value, str):
        return _SPACES.sub(" ", value.lower().translate(_PUNCTUATION)).strip()
    if isinstance(value, Mapping):
        return {k: normalise_text(v) for k, v in value.items()}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return normalise_text(dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return normalise_text(dataclasses.asdict(value))
    if isinstance(value, list | tuple):
        return [normalise_text(v) for v in value]
    return value


def timestamp_field(material: Any) -> str | None:
    """The first field of a cache key's material that looks like a moment in time (named
    ``ts``, ``created_at``, ``fetched``..., or holding an ISO date and time), or ``None``.

    A key that includes one changes with every item, so the cache never answers.
    """
    dump = getattr(material, "model_dump", None)
    if callable(dump):
        material = dump()
    elif dataclasses.is_dataclass(material) and not isinstance(material, type):
        material = {f.name: getattr(material, f.name) for f in dataclasses.fields(material)}
    if not isinstance(material, Mapping):
        return None
    for name, value in material.items():
        if not isinstance(name, str):
            continue
        if _TIME_NAME.search(name) or (isinstance(value, str) and _ISO_TIME.match(value)):
            return name
        if type(value).__name__ in ("datetime", "Timestamp"):
            return name
    return None
