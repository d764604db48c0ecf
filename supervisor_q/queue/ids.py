"""Job ids and payloads as Redis holds them: whatever bytes were stored.

Bytes that are not UTF-8 are read as surrogate escapes (text) and written back as the
very same bytes (raw), so such a job can still be acked, released, failed, listed,
retried and forgotten. Imports nothing from the package.
"""

from __future__ import annotations

import re


def text(value: bytes | str) -> str:
    """A stored id or payload as str; undecodable bytes become surrogate escapes."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def raw(value: str) -> bytes:
    """The stored bytes of an id or payload read by text()."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: keep it as is
        return value.encode("utf-8", "surrogatepass")


# -- the shown form: how every command, page and log line prints an id, and what each
# of them takes back. Bytes that are not UTF-8 show as \xNN (lower-case hex), newline,
# carriage return and tab as \n, \r, \t, other C0 controls and DEL as \xNN, the C1
# controls (NEL among them) and the Unicode line and paragraph separators as \uNNNN
# (str.splitlines() and some log viewers break lines there too): one line of printable
# text. A lookup tries the id as given first, then its unshown() form, so an id that
# really holds a backslash is still found.

CONTROLS = ({c: f"\\x{c:02x}" for c in [*range(32), 127]} | {10: "\\n", 13: "\\r", 9: "\\t"}
            | {c: f"\\u{c:04x}" for c in [*range(0x80, 0xA0), 0x2028, 0x2029]})
_ESCAPE = re.compile(r"\\(x[0-9a-f]{2}|u00[89][0-9a-f]|u202[89]|[nrt])")
_NAMED = {"n": "\n", "r": "\r", "t": "\t"}


def shown(value: bytes | str) -> str:
    """An id (or any stored text) as one printable line: see the rule above."""
    value = text(value)
    try:
        printed = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \\udXXX escape
        printed = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return printed.translate(CONTROLS)


def _unescape(match: re.Match[str]) -> str:
    code = match[1]
    if code in _NAMED:
        return _NAMED[code]
    if code[0] == "u":
        return chr(int(code[1:], 16))
    byte = int(code[1:], 16)
    if byte >= 0x80:
        return chr(0xDC00 + byte)  # the surrogate escape text() reads that byte as
    return chr(byte) if byte < 32 or byte == 127 else match[0]


def unshown(value: str) -> str:
    """The id shown() printed, back to the string that names it in Redis (text())."""
    return _ESCAPE.sub(_unescape, value)


def candidates(value: bytes | str) -> list[str]:
    """The stored ids a given id may mean: itself (bytes as text()), then unshown()."""
    given = text(value)
    back = unshown(given)
    return [given] if back == given else [given, back]
