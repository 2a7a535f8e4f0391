"""JSON text for hostile frames: a writer that can say anything, and a reader that
lists every reading of a text the contract allows.

The writer takes plain values plus :class:`Raw` (text written verbatim: numbers
no serializer writes, broken tokens) and :class:`Pairs` (an object with
duplicate keys, in order). The reader, :func:`readings`, is the oracle's view of
"what does this frame say": the size limit first (in bytes), then the
encodings a JSON reader may detect, then the JSON itself, noting everything
a stricter reader could reject instead (duplicate keys, NaN/Infinity
literals, a BOM, numbers too long to convert); for those, ``bad_json`` is an
allowed outcome next to the reading.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from perpstream.producer.binance import BAD_JSON, TOO_LARGE


@dataclass(frozen=True)
class Raw:
    """A token written as is (``1e999``, ``NaN``, 400 digits, ``"\\ud800"``, garbage)."""

    text: str


class Pairs:
    """An object written as these key/value pairs, duplicates included."""

    def __init__(self, items: Any = ()) -> None:
        self.items: list[tuple[str, Any]] = list(items)


@dataclass(frozen=True)
class HugeInt:
    """An integer literal too long for ``int()`` (Python caps str->int at 4,300 digits)."""

    digits: str


@dataclass(frozen=True)
class Style:
    ensure_ascii: bool = True
    compact: bool = True
    indent: int | None = None


def dumps(value: Any, style: Style = Style()) -> str:
    try:  # plain values: the standard writer (Raw and Pairs make it raise TypeError)
        return json.dumps(value, ensure_ascii=style.ensure_ascii, indent=style.indent,
                          separators=(",", ":") if style.compact else (", ", ": "))
    except (TypeError, ValueError):
        pass
    out: list[str] = []
    _write(value, style, out, 0)
    return "".join(out)


def _write(v: Any, style: Style, out: list[str], depth: int) -> None:
    sep_item = "," if style.compact else ", "
    sep_key = ":" if style.compact else ": "
    nl = ""
    if style.indent is not None:
        nl = "\n" + " " * (style.indent * (depth + 1))
    if isinstance(v, Raw):
        out.append(v.text)
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(json.dumps(v))  # NaN / Infinity literals included
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=style.ensure_ascii))
    elif isinstance(v, dict | Pairs):
        pairs = list(v.items()) if isinstance(v, dict) else v.items
        out.append("{")
        for n, (k, x) in enumerate(pairs):
            if n:
                out.append(sep_item)
            out.append(nl)
            out.append(json.dumps(k, ensure_ascii=style.ensure_ascii) if isinstance(k, str) else k.text)
            out.append(sep_key)
            _write(x, style, out, depth + 1)
        out.append("}")
    elif isinstance(v, list | tuple):
        out.append("[")
        for n, x in enumerate(v):
            if n:
                out.append(sep_item)
            out.append(nl)
            _write(x, style, out, depth + 1)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(v).__name__}")


@dataclass
class Reading:
    """One way to read a frame: the value, and what a stricter reader may reject instead."""

    value: Any
    strict_ok: bool = True
    notes: list[str] = field(default_factory=list)


@dataclass
class Readings:
    """Everything a frame may mean: rejections allowed outright, and readings."""

    rejects: set[str] = field(default_factory=set)
    values: list[Reading] = field(default_factory=list)
    #: Known bugs this text triggers in the product (see known_bugs).
    triggers: set[str] = field(default_factory=set)


#: More digits than this and the reader keeps the literal as a HugeInt (json.loads of the
#: product raises ValueError past 4,300; anything between is still an int).
_INT_DIGITS = 4_000

_UTF8_BOM = b"\xef\xbb\xbf"
_WIDE = ("utf-16", "utf-32", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


def _parse(text: str) -> Reading:
    """json.loads with hooks noting what a strict RFC 8259 reader would refuse."""
    notes: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)  # last wins, as every common reader does
        if len(d) != len(pairs):
            notes.append("duplicate keys")
        return d

    def constant(name: str) -> float:
        notes.append(f"{name} literal")
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]

    def integer(s: str) -> int | HugeInt:
        if len(s.lstrip("-")) > _INT_DIGITS:
            notes.append("integer too long to convert")
            return HugeInt(s)
        return int(s)

    value = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=constant, parse_int=integer)
    return Reading(value, strict_ok=not notes, notes=notes)


def _texts(raw: str | bytes) -> tuple[list[tuple[str, bool]], bool]:
    """The texts a frame may be, each with "a strict reader reads it too"; and whether
    refusing the encoding outright is allowed."""
    if isinstance(raw, str):
        if raw.startswith("\ufeff"):
            return [(raw[1:], False)], True
        return [(raw, True)], False
    texts: list[tuple[str, bool]] = []
    lenient = False
    if raw.startswith(_UTF8_BOM):
        lenient = True
        with contextlib.suppress(UnicodeDecodeError):
            texts.append((raw[3:].decode("utf-8"), False))
    else:
        with contextlib.suppress(UnicodeDecodeError):
            texts.append((raw.decode("utf-8"), True))
    if not texts:
        # UTF-8 with encoded surrogates (ED A0 80...): Python's reader lets them through as lone
        # surrogates; a strict one refuses the frame
        try:
            body = raw[3:] if raw.startswith(_UTF8_BOM) else raw
            texts.append((body.decode("utf-8", "surrogatepass"), False))
            lenient = True
        except UnicodeDecodeError:
            pass
    plain_utf8 = bool(texts) and texts[0][1] and "\x00" not in texts[0][0][:4]
    if not plain_utf8:
        # RFC 4627 readers detect UTF-16/32 from the first bytes; a UTF-8-only reader refuses
        for enc in _WIDE:
            try:
                t = raw.decode(enc)
            except UnicodeDecodeError:
                continue
            texts.append((t[1:] if t.startswith("\ufeff") else t, False))
            lenient = True
    return texts, lenient


def readings(raw: str | bytes, max_bytes: int) -> Readings:
    """The oracle's reading of one frame or body (see the module docstring)."""
    out = Readings()
    if len(raw) > max_bytes:
        out.rejects.add(TOO_LARGE)
        return out
    if isinstance(raw, str) and len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        # A text frame over the limit in bytes but not in characters: the limit may be
        # applied to either (the websocket layer allows 4 x the limit in bytes).
        out.rejects.add(TOO_LARGE)
    texts, lenient = _texts(raw)
    if lenient:
        out.rejects.add(BAD_JSON)
    seen: set[str] = set()
    for text, strict in texts:
        if text in seen:
            continue
        seen.add(text)
        try:
            reading = _parse(text)
        except RecursionError:
            out.triggers.add("json_recursion")
            continue
        except ValueError:
            continue
        if not reading.strict_ok or not strict:
            out.rejects.add(BAD_JSON)
        out.values.append(reading)
    if not out.values:
        out.rejects.add(BAD_JSON)
    return out
