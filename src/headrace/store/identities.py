"""What changed in a pipeline between two sessions of a durable run, in words.

Each session stores the identities of its leaf steps (what decides each one's
results: :func:`headrace.pipeline.fingerprint.leaf_identities`); a resume refused
for a changed pipeline names the changes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["identity_changes"]


def identity_changes(before: Any, now: dict[str, dict[str, str]]) -> list[str]:
    """The changes between two :func:`leaf_identities`, in words (``before`` is
    untrusted: it was read back from a run store)."""
    if not isinstance(before, dict):
        return []
    changes: list[str] = []
    for name, parts in now.items():
        old = before.get(name)
        if not isinstance(old, dict):
            changes.append(f"step {name!r} is new")
            continue
        for part in sorted(set(parts) | {str(k) for k in old}):
            then, current = old.get(part), parts.get(part)
            if then != current:
                changes.append(f"step {name!r}: {part} {then!r} then, {current!r} now")
    changes.extend(f"step {name!r} is gone" for name in before if name not in now)
    return changes
