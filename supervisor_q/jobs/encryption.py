"""Encrypted and signed payloads: seal at dispatch, open in the worker.

Encryption (Fernet: AES-CBC + HMAC) hides a job's args, kwargs and extras (chain,
batch) in Redis; the job name, id and queue stay readable for the failed list.
Signing (HMAC-SHA256 over the canonical payload) lets a worker refuse payloads not
written by a holder of the key. Keys come from configure() or the environment, read
at call time: SUPERVISOR_Q_ENCRYPTION_KEY (Fernet keys, comma-separated, newest
first, for rotation) and SUPERVISOR_Q_SIGNING_KEY. Imports payload only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from typing import TYPE_CHECKING, Any

from supervisor_q.queue import payload as payloads

if TYPE_CHECKING:  # cryptography is imported on first use: most workers never encrypt
    from cryptography.fernet import MultiFernet
from supervisor_q.queue.payload import MalformedPayload, Payload

ENCRYPTION_ENV = "SUPERVISOR_Q_ENCRYPTION_KEY"
SIGNING_ENV = "SUPERVISOR_Q_SIGNING_KEY"
_SEALED = "encrypted"  # extra field holding the Fernet token
_SIGNATURE = "sig"  # extra field holding the HMAC


class _Keys:
    def __init__(self) -> None:
        self.encryption: str | None = None
        self.signing: str | None = None


_keys = _Keys()


def configure(*, encryption_key: str | None = None, signing_key: str | None = None) -> None:
    """Set keys in code (they beat the environment); None leaves the environment's."""
    _keys.encryption = encryption_key
    _keys.signing = signing_key


def generate_key() -> str:
    """A new Fernet key for SUPERVISOR_Q_ENCRYPTION_KEY."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _key_list(raw: str) -> list[str]:
    """A key setting's keys: comma-separated, newest first, spaces and empty ones dropped."""
    return [k.strip() for k in raw.split(",") if k.strip()]


def _fernet() -> MultiFernet | None:
    raw = _keys.encryption or _environ(ENCRYPTION_ENV)
    keys = _key_list(raw)
    if not keys:
        return None
    from cryptography.fernet import Fernet, MultiFernet

    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ValueError(f"{ENCRYPTION_ENV} is not a valid Fernet key: {exc}") from None


def key_problem() -> str | None:
    """Why the encryption keys set now cannot be used (one line, no key in it), or None."""
    try:
        _fernet()
    except ValueError as exc:
        return str(exc)
    return None


_env_keys: dict[str, object] = {}  # a variable's name as os.environ stores it (bytes)


def _environ(name: str) -> str:
    """os.environ.get(name, "") without its KeyError on a miss (a worker asks for the
    signing key once per job, and a caught KeyError cost more than the rest of the
    check): the same lookup in os.environ's own mapping, which setenv/putenv update."""
    env = os.environ
    data = getattr(env, "_data", None)
    if type(data) is not dict:  # not CPython's os._Environ: its public way
        return env.get(name, "")
    key = _env_keys.get(name)
    if key is None:
        key = _env_keys[name] = env.encodekey(name)  # type: ignore[attr-defined]
    found = data.get(key)
    return "" if found is None else env.decodevalue(found)  # type: ignore[attr-defined]


_split_keys: dict[str, tuple[bytes, ...]] = {}  # a key setting -> its keys, newest first


def _signing_keys() -> tuple[bytes, ...]:
    """The signing keys now, newest first: comma-separated, as the encryption keys, so a
    new key can sign while workers still accept the old one; () when none is set. Read
    per call (a key set or removed at run time applies); split once per setting."""
    raw = _keys.signing or _environ(SIGNING_ENV)
    if not raw:
        return ()
    keys = _split_keys.get(raw)
    if keys is None:
        keys = tuple(k.encode() for k in _key_list(raw))
        if len(_split_keys) >= 8:  # settings seen: a handful in a process's life
            _split_keys.clear()
        _split_keys[raw] = keys = keys or (raw.encode(),)  # only commas: one key, as set
    return keys


def signing_enabled() -> bool:
    """Whether payloads are signed now (a key configured or in the environment)."""
    return bool(_signing_keys())


def _canonical(payload: Payload) -> bytes:
    body = dataclasses.asdict(payload)
    body["extra"] = {k: v for k, v in payload.extra.items() if k != _SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _signature(key: bytes, canonical: bytes) -> str:
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def seal(payload: Payload, *, encrypt: bool = False) -> str:
    """The JSON to store: args/kwargs/extras encrypted if asked, signed if a key is set."""
    if encrypt:
        fernet = _fernet()
        if fernet is None:
            raise ValueError(f"job {payload.job} is encrypted=True but no key is set: "
                             f"set {ENCRYPTION_ENV} (see encryption.generate_key())")
        secret = json.dumps({"args": payload.args, "kwargs": payload.kwargs,
                             "extra": payload.extra}, allow_nan=False)
        token = fernet.encrypt(secret.encode()).decode()
        payload = dataclasses.replace(payload, args=[], kwargs={}, extra={_SEALED: token})
    keys = _signing_keys()
    if keys:  # signed with the newest key
        extra = {k: v for k, v in payload.extra.items() if k != _SIGNATURE}
        payload = dataclasses.replace(payload, extra=extra)
        payload.extra[_SIGNATURE] = _signature(keys[0], _canonical(payload))
    return payloads.encode(payload)


def open_payload(payload: Payload) -> Payload:
    """Verify and decrypt a stored payload; MalformedPayload says why it cannot run."""
    keys = _signing_keys()
    if keys:  # accepted when signed with any of the keys (rotation)
        given = payload.extra.get(_SIGNATURE)
        canonical = _canonical(payload) if isinstance(given, str) else b""
        if not isinstance(given, str) or not any(
                hmac.compare_digest(given, _signature(key, canonical)) for key in keys):
            raise MalformedPayload("refused: payload signature is missing or invalid (not "
                                   f"written by a holder of {SIGNING_ENV})")
    token = payload.extra.get(_SEALED)
    if token is None:
        return payload
    fernet = _fernet()
    if fernet is None:
        raise MalformedPayload(f"payload is encrypted and this worker has no key: set "
                               f"{ENCRYPTION_ENV}")
    from cryptography.fernet import InvalidToken

    try:
        secret: Any = json.loads(fernet.decrypt(str(token).encode()))
    except InvalidToken:
        raise MalformedPayload(f"cannot decrypt payload: wrong {ENCRYPTION_ENV} or the "
                               "payload was tampered with") from None
    if not isinstance(secret, dict) or not isinstance(secret.get("args"), list):
        raise MalformedPayload("decrypted payload is not a job body")
    return dataclasses.replace(payload, args=secret["args"], kwargs=secret.get("kwargs") or {},
                               extra=secret.get("extra") or {})
