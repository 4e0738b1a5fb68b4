"""Credentials inside URLs never reach a message: ``redis://:PASS@host`` prints as
``redis://:***@host``, in our own messages and in the text of a driver's error."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["scrub_text", "scrub_url"]

# scheme://user:password@ (the user part may be empty), anywhere in a text
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):[^@\s]*@")
# libpq's key=value form, as it appears in psycopg's messages
_PASSWORD_PAIR = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def scrub_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub_text(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def scrub_text(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` and ``password=...`` scrubbed."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _PASSWORD_PAIR.sub(lambda m: m.group(1) + "***", text)
