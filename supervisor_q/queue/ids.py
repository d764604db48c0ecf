"""Job ids and payloads as Redis holds them: whatever bytes were stored.

Bytes that are not UTF-8 are read as surrogate escapes (text) and written back as the
very same bytes (raw), so such a job can still be acked, released, failed, listed,
retried and forgotten. Imports nothing from the package.
"""

from __future__ import annotations


def text(value: bytes | str) -> str:
    """A stored id or payload as str; undecodable bytes become surrogate escapes."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def raw(value: str) -> bytes:
    """The stored bytes of an id or payload read by text()."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: keep it as is
        return value.encode("utf-8", "surrogatepass")
