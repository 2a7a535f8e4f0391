"""Redaction: passwords never leave the process in a log line, an error message, a metric
label, a health reason or the terminal view.

One place does it. :func:`redact` masks

- the password of every URL with userinfo (``scheme://user:pass@host`` ->
  ``scheme://user:***@host``), whether or not it was registered, and
- every secret value registered with :func:`register_secret`: each
  ``SecretStr`` of a settings object built in the process and the password of
  each DSN/URL setting (``CommonSettings`` registers them when it is built), in
  the forms they are written in (as given, percent-decoded, percent-encoded).

:func:`redact_dsn` masks one DSN's password for display. The log formatters,
the CLI's error line, health reasons, Prometheus label values, the live view
and ``perpstream up``'s lines all go through :func:`redact`. Values shorter
than :data:`MIN_SECRET_LEN` characters are not searched for in free text (they
would mask every other word); URL userinfo is masked whatever its length.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from pydantic import SecretStr

MASK = "***"
#: Shorter registered values are masked in URLs only, not searched for in free text.
MIN_SECRET_LEN = 3

# scheme://user:password@ (the password may hold anything but whitespace and '@')
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)(?P<pw>[^\s@]*)@")

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | SecretStr | None) -> None:
    """Mask ``value`` (and its percent-encoded and -decoded forms) wherever it appears from now on."""
    global _secrets, _pattern
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        return
    forms = {value, unquote(value), quote(value, safe="")}
    if ":" in value:  # user:password (a registry's basic auth): the password alone too
        forms.add(value.split(":", 1)[1])
    new = {f for f in forms if len(f) >= MIN_SECRET_LEN}
    with _lock:
        if new <= _secrets:
            return
        _secrets = _secrets | new
        alternatives = sorted(_secrets, key=len, reverse=True)  # the longest form first
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def userinfo_password(text: str) -> str | None:
    """The password of ``[scheme://]user:password@host...``, or None when there is none."""
    rest = text.split("://", 1)[1] if "://" in text else text
    userinfo, at, _ = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1] or None


def register_values(values: Iterable[Any]) -> None:
    """Register each ``SecretStr`` of ``values`` and the userinfo password of each string."""
    for v in values:
        if isinstance(v, SecretStr):
            register_secret(v)
        elif isinstance(v, str) and "@" in v:
            register_secret(userinfo_password(v))


def redact(text: str) -> str:
    """``text`` with URL userinfo passwords and every registered secret replaced by ``***``."""
    if not text:
        return text
    out = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text) if "://" in text else text
    pattern = _pattern
    return pattern.sub(MASK, out) if pattern is not None else out


def redact_dsn(dsn: str) -> str:
    """A DSN or URL for display: its password (if any) replaced by ``***``, with or without a scheme."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        scheme, rest = "", dsn
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        dsn = f"{scheme}{sep}{user}:{MASK}@{host}"
    return redact(dsn)


def redact_value(value: Any) -> Any:
    """:func:`redact` for a structured value (a log record's extra field): strings, and the
    strings inside lists, tuples and dicts; other values as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))  # what a formatter would print for it (json.dumps(default=str))


def forget_all() -> None:
    """Forget every registered secret (tests: each starts from a clean registry)."""
    global _secrets, _pattern
    with _lock:
        _secrets, _pattern = frozenset(), None
