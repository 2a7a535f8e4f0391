"""Hostile producer inputs from a seed: websocket frames, open-interest bodies, exchangeInfo.

Pure functions of a ``random.Random`` (a seeded one in the benchmark,
hypothesis' ``st.randoms()`` in the tests, which then shrinks a failure to its
simplest choices). Each returns a :class:`~perpstream.fakes.hostile.outcomes.Case`; what
the producer must do with it is the oracle's business
(:mod:`perpstream.fakes.hostile.binance_rules`), never the generator's.

``known_bugs=False`` keeps out the inputs built to trigger a bug the suite
found (:mod:`perpstream.fakes.hostile.known_bugs`); by default they are in, since those
bugs are fixed and the inputs now guard against their return.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any, Final

from perpstream.fakes.hostile.jsontext import Pairs, Raw, Style, dumps
from perpstream.fakes.hostile.outcomes import Case
from perpstream.producer.binance import ALL_MARKET_STREAM
from perpstream.schemas import rules

#: Real shapes: ASCII, digits first, dated delivery contracts, CJK-named perpetuals.
REAL_SYMBOLS: Final = (
    "BTCUSDT", "1000PEPEUSDT", "BTCUSDT_261225", "币安人生USDT", "我踏马来了USDT", "ETH-PERP")
#: Event times of generated frames: late 2026, inside the contract's range.
T0: Final = 1_790_000_000_000
#: The frame limit the generated frames are judged against (the product's default is 4 MB;
#: the harness sets this one so frames around the limit stay cheap to make).
MAX_FRAME: Final = 300_000
#: Symbols an all-market Ingest keeps when it filters.
FILTER: Final = frozenset({"BTCUSDT", "币安人生USDT", "1000PEPEUSDT"})
SENTINEL_SYMBOL: Final = "BTCUSDT"

_MIN, _MAX = rules.MIN_EVENT_TIME_MS, rules.MAX_EVENT_TIME_MS
_CJK = (0x4E00, 0x9FFF)
_OTHER_LETTERS = "ÄÖÜÉÑΣΩДЖЯאבגابت" + "กขค" + "अआक" + "\uff22\uff34\uff23"
_COMBINING = "\u0301\u0308\u093f\u0e31"
_ASCII_SYMBOL = string.ascii_uppercase + string.digits

Pool = list[tuple[Any, str | None]]


def valid_symbol(rng: random.Random) -> str:
    """A symbol the contract accepts: the real shapes, ASCII, CJK and other scripts, the byte bound."""
    k = rng.randrange(9)
    if k < 3:
        return rng.choice(REAL_SYMBOLS)
    if k == 3:
        s = "".join(rng.choice(_ASCII_SYMBOL) for _ in range(rng.randint(1, 12))) + "USDT"
    elif k == 4:
        s = "".join(chr(rng.randint(*_CJK)) for _ in range(rng.randint(1, 6))) + "USDT"
    elif k == 5:
        s = "".join(rng.choice(_OTHER_LETTERS) for _ in range(rng.randint(1, 5))) + rng.choice(
            ["USDT", "", "_261225"])
        s += rng.choice(["", rng.choice(_COMBINING)]) if s[-1].isalpha() and not s[-1].isascii() else ""
    elif k == 6:
        s = rng.choice(["A" * 64, "币" * 21, "_", "-", "0", "E\u0301USDT", "BTCUSDT_261225", "ETH-PERP"])
    elif k == 7:
        tail = "".join(rng.choice(_ASCII_SYMBOL + "_-") for _ in range(rng.randint(0, 30)))
        s = rng.choice(_ASCII_SYMBOL) + tail
    else:
        s = f"SYM{rng.randrange(10_000)}USDT"
    return s if rules.symbol_problem(s) is None else "BTCUSDT"


def price(rng: random.Random, *, signed: bool = False) -> Any:
    """A price (or, ``signed``, a funding rate) in one of the forms a decimal may take."""
    x = rng.choice([0.0, 1e-8, 0.5, 1.0, 3.14159, 64240.38272864, 1e6, 123456789.123, 1e300])
    x *= rng.choice([1.0, rng.random() + 0.5])
    if signed and rng.random() < 0.5:
        x = -x
    k = rng.randrange(12)
    if k < 5:
        return f"{x:.8f}"
    if k == 5:
        return repr(x)
    if k == 6:
        return f"{x:.{rng.randint(0, 17)}e}"
    if k == 7:
        return x  # a JSON number
    if k == 8:
        return int(x) if abs(x) < 2**70 else x
    if k == 9:
        return rng.choice(["0", "0.00000000", ".5", "5.", "+1.5", "1E+3", "1e-400", "-0", "00012.5"])
    if k == 10:
        return "1" + "0" * rng.randint(0, 300) + "." + "9" * rng.randint(1, 400)
    return Raw(rng.choice(["-0", "-0.0", "1E2", "1.0e-400", "0.1e1", str(2**63 + 1), str(2**64)]))


def mark_payload(rng: random.Random, symbol: str | None = None, *,
                 event_time: int | None = None) -> dict[str, Any]:
    """A valid markPriceUpdate payload; sometimes a delivery contract, sometimes with newer fields."""
    et = event_time if event_time is not None else T0 + rng.randrange(10**9)
    d: dict[str, Any] = {
        "e": "markPriceUpdate", "E": et, "s": symbol if symbol is not None else valid_symbol(rng),
        "p": price(rng), "i": price(rng), "P": price(rng), "r": price(rng, signed=True),
        "T": rng.choice([et + rng.randrange(1, 8 * 3_600_000), _MIN, _MAX - 1]),
    }
    if rng.random() < 0.2:
        d["r"], d["T"] = "", 0  # dated delivery contract
    if rng.random() < 0.3:
        d["ap"] = price(rng)
        d["st"] = rng.choice([0, 1, "x", None])
    if rng.random() < 0.2:
        keys = list(d)
        rng.shuffle(keys)
        d = {k: d[k] for k in keys}
    return d


#: The valid frame fed after every hostile one: it must always be published, exactly.
SENTINEL_FRAME: Final = dumps({"stream": "btcusdt@markPrice@1s", "data": {
    "e": "markPriceUpdate", "E": T0 + 1, "s": SENTINEL_SYMBOL, "p": "64240.38272864",
    "i": "64261.21012245", "P": "64234.17512183", "r": "0.00010000", "T": T0 + 3_600_000}})


def sentinel_open_interest(n: int) -> str:
    """The valid body fed after every hostile one: its own symbol, two times taken in turn
    (never the same observation twice in a row, so never a duplicate)."""
    return dumps({"symbol": "OISENTINELUSDT", "openInterest": "10659.509", "time": T0 + n % 2})


# -- value pools: (value, known bug it triggers) ------------------------------------------------

def _numbers() -> Pool:
    lenient = "lenient_decimal_strings"
    overflow = "number_int_overflow"
    return [
        ("nan", None), ("NaN", None), ("-nan", None), ("inf", None), ("-Infinity", None), ("infinity", None),
        ("1e309", None), ("-1e309", None), ("9" * 400, None), ("-1.5", None), ("-0.00000001", None),
        ("", None), (" ", None), ("abc", None), ("1.5.5", None), ("0x10", None), ("1,5", None), ("1e", None),
        ("e5", None), ("--1", None), ("1.5f", None), ("\u0000", None), ("1.5\u0000", None), ("\u066b5", None),
        ("\u0661\u0662\u0663", lenient), ("\uff11\uff12\uff13", lenient), (" 1.5", lenient),
        ("1.5\n", lenient), ("1_000", lenient), ("\u20031.5", lenient), ("nan ", lenient),
        (Raw("NaN"), None), (Raw("Infinity"), None), (Raw("-Infinity"), None), (Raw("1e999"), None),
        (Raw("-1e999"), None), (-1.5, None), (-1, None), (2**63 + 1, None), (Raw("-0"), None),
        (Raw("-0.0"), None), (Raw("1.0e-400"), None), (Raw("9" * 5000), None),
        (Raw("9" * 400), overflow), (Raw("-" + "9" * 350), overflow), (Raw("1" + "0" * 4100), overflow),
        (None, None), (True, None), (False, None), ([], None), ({}, None), (["1.5"], None),
        ({"v": "1"}, None), (1.5, None), (0, None),
    ]


def _times(*, funding: bool) -> Pool:
    zero = "funding_time_zero_lenient" if funding else None
    return [
        (float(T0), None), (T0 + 0.5, None), (str(T0), None), (Raw(f"{T0}.0"), None), (Raw("1.79e12"), None),
        (_MIN - 1, None), (_MIN, None), (_MAX - 1, None), (_MAX, None), (0 if not funding else 1, None),
        (-1, None), (2**63, None), (2**64 + 5, None), (-(2**63) - 1, None), (True, None), (None, None),
        ([], None), ({}, None), ("", None), (Raw("9" * 400), None), (Raw("NaN"), None), (Raw("-0"), None),
        (False, zero), (Raw("0.0"), zero), (Raw("-0.0"), zero),
    ]


def _symbols() -> Pool:
    return [
        ("", None), ("btcusdt", None), ("BtcUsdt", None), ("BTC USDT", None), (" BTCUSDT", None),
        ("BTCUSDT ", None), ("BTC\nUSDT", None), ("BTC\tUSDT", None), ("BTC\x00USDT", None), ("\x00", None),
        ("BTC\x7fUSDT", None), ("BTC\u0085USDT", None), ("BTC\u00a0USDT", None), ("BTC\u200bUSDT", None),
        ("BTC\u202eUSDT", None), ("BTC/USDT", None), ("BTC.USDT", None), ("BTC$", None), ("\ud800", None),
        ("BTC\udfffUSDT", None), ("X" * 65, None), ("币" * 22, None), ("🚀USDT", None), ("\ue000USDT", None),
        ("Ⅻ", None), ("①", None), ("\u0378", None), ("e\u0301", None), ("BTCUSDT\r\n", None),
        ("\ufeffBTC", None),
        (5, None), (None, None), (True, None), (1.5, None), (Raw("1e999"), None),
        (["BTCUSDT"], "symbol_filter_unhashable"), ({"s": "BTCUSDT"}, "symbol_filter_unhashable"),
    ]


def _events() -> Pool:
    events: tuple[Any, ...] = ("markPriceUpdatex", "markpriceupdate", "MARKPRICEUPDATE", "", "24hrTicker",
                               "markPriceUpdate\u0000", " markPriceUpdate", None, 1, [], True, "aggTrade")
    return [(e, None) for e in events]


NUMBERS: Final = _numbers()
EVENT_TIMES: Final = _times(funding=False)
FUNDING_TIMES: Final = _times(funding=True)
SYMBOLS: Final = _symbols()
EVENTS: Final = _events()


def garbage(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, nested a little."""
    k = rng.randrange(10 if depth < 4 else 7)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.choice([0, -1, 1, 2**53 + 1, -(2**63), 2**64, rng.randrange(-10**6, 10**6)])
    if k == 3:
        return rng.choice([0.5, -0.0, 1e308, 5e-324, rng.uniform(-1e6, 1e6)])
    if k in (4, 5, 6):
        alphabet = rng.choice([string.printable, "abcXYZ", "币安人生\u0301\x00\x1f\u2028\ud800\"\\/"])
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
    if k in (7, 8):
        return [garbage(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["e", "s", "E", "p", "data", "stream", "id", "result", "x", ""]
    return {rng.choice(keys): garbage(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def nested(rng: random.Random, depth: int, leaf: Any = 1) -> Any:
    v = leaf
    for _ in range(depth):
        v = [v] if rng.random() < 0.5 else {"a": v}
    return v


def _symbol(rng: random.Random, filtered: bool) -> str:
    """A valid symbol; with a symbol filter, mostly one it keeps."""
    if filtered and rng.random() < 0.7:
        return rng.choice(sorted(FILTER))
    return valid_symbol(rng)


class _Gen:
    """One case under construction: the rng, the options, the first known bug used."""

    def __init__(self, rng: random.Random, known_bugs: bool, filtered: bool) -> None:
        self.rng = rng
        self.known_bugs = known_bugs
        self.filtered = filtered
        self.bug: str | None = None

    def pick(self, pool: Pool) -> Any:
        while True:
            value, bug = self.rng.choice(pool)
            if bug == "symbol_filter_unhashable" and not self.filtered:
                return value  # without a symbol filter it is just a bad symbol
            if bug is None or self.known_bugs:
                if bug is not None and self.bug is None:
                    self.bug = bug
                return value

    def symbol(self) -> str:
        return _symbol(self.rng, self.filtered)

    def bulk(self) -> random.Random:
        """A generator for bulk content (long arrays): one draw of ``rng``, however much it makes."""
        return random.Random(self.rng.getrandbits(64))

    def style(self) -> Style:
        r = self.rng
        return Style(ensure_ascii=r.random() < 0.5, compact=r.random() < 0.7,
                     indent=r.choice([None, None, None, 0, 2]))

    def encode(self, text: str) -> str | bytes:
        """The frame as the websocket delivers it: text, or bytes in some encoding."""
        r = self.rng
        k = r.randrange(20)
        if k < 8:
            return text
        try:
            utf8 = text.encode("utf-8")
        except UnicodeEncodeError:  # a raw lone surrogate: only as text, or as invalid UTF-8
            return text if r.random() < 0.5 else text.encode("utf-8", "surrogatepass")
        if k < 16:
            return utf8
        wide: dict[int, str | bytes] = {
            16: b"\xef\xbb\xbf" + utf8, 17: text.encode("utf-16"), 18: "\ufeff" + text,
            19: text.encode(r.choice(["utf-16-le", "utf-16-be", "utf-32", "utf-32-be"]))}
        return wide[k]

    def mutate_item(self, d: dict[str, Any]) -> Any:
        """1-3 field-level faults: missing, wrong type, hostile numbers, times, symbols, events,
        duplicate keys, extra fields (harmless)."""
        r = self.rng
        out: dict[str, Any] | Pairs = dict(d)
        for _ in range(r.randint(1, 3)):
            assert isinstance(out, dict)
            k = r.randrange(9)
            if k == 0 and out:
                out.pop(r.choice(list(out)))
            elif k == 1:
                out[r.choice(["p", "i", "P", "r"])] = self.pick(NUMBERS)
            elif k == 2:
                out["E"] = self.pick(EVENT_TIMES)
            elif k == 3:
                out["T"] = self.pick(FUNDING_TIMES)
            elif k == 4:
                out["s"] = self.pick(SYMBOLS)
            elif k == 5:
                out["e"] = self.pick(EVENTS)
            elif k == 6:
                out[r.choice(["x", "ap", "st", "data", "S", "e "])] = garbage(r)
            elif k == 7:
                out["zz"] = nested(r, r.randint(1, 120))
            else:
                f = r.choice(list(out) or ["p"])
                first, last = garbage(r), out.get(f, "1")
                if r.random() < 0.5:
                    first, last = last, first
                pairs = [(key, v) for key, v in out.items() if key != f]
                pairs.insert(r.randrange(len(pairs) + 1), (f, first))
                pairs.append((f, last))
                return Pairs(pairs)  # duplicate keys: the last one wins
        return out

    def payload(self) -> Any:
        d = mark_payload(self.rng, self.symbol())
        return self.mutate_item(d) if self.rng.random() < 0.6 else d

    def wrap(self, data: Any, stream: str | None = None) -> Any:
        """Raw, or combined ``{"stream", "data"}``."""
        if self.rng.random() < 0.5:
            return data
        name = stream or (data["s"].lower() + "@markPrice@1s" if isinstance(data, dict)
                          and isinstance(data.get("s"), str) else ALL_MARKET_STREAM)
        return {"stream": name, "data": data}


def _sized(gen: _Gen, limit: int) -> str | bytes:
    """A valid frame padded to the limit, one byte over, or one under; in bytes or text."""
    r = gen.rng
    d = mark_payload(r, gen.symbol())
    target = limit + r.choice([-1, 0, 1, 1, 2, 1000])
    pad_char = r.choice(["x", "币"])
    d["pad"] = ""
    base = len(dumps(d, Style(ensure_ascii=False)).encode("utf-8"))
    n = max(0, (target - base) // len(pad_char.encode("utf-8")))
    d["pad"] = pad_char * n
    text = dumps(d, Style(ensure_ascii=False))
    return text if r.random() < 0.5 else text.encode("utf-8")


def _text_mutation(rng: random.Random, text: str) -> str:
    k = rng.randrange(7)
    if not text:
        return text
    i = rng.randrange(len(text))
    nasty = rng.choice(['"', "\\", "{", "}", "[", "]", ",", ":", "\x00", "\n", " ", "\ud800", "x", "0", "-",
                        "é", "\u2028", "\x1f"])
    if k == 0:
        return text[:i]  # truncated
    if k == 1:
        return text[:i] + text[i + 1:]
    if k == 2:
        return text[:i] + nasty + text[i:]
    if k == 3:
        return text[:i] + nasty + text[i + 1:]
    if k == 4:
        return text + rng.choice(["}", "x", "\x00", "{}", ' {"e":1}', "\n", "]"])
    if k == 5:
        return rng.choice([" \n\t\r", "\x0c", "\u00a0", "\u2028", ""]) + text + rng.choice(["", " \r\n"])
    j = rng.randrange(len(text))
    return text[:i] + text[j:j + rng.randint(1, 30)] + text[i:]


def _encoding_case(gen: _Gen) -> str | bytes:
    r = gen.rng
    d = mark_payload(r, gen.symbol())
    k = r.randrange(8)
    if k == 0:  # escaped control characters or a lone surrogate inside the symbol
        d["s"] = r.choice(["BTC\u0000USDT", "\u001f", "BTC\ud800", "\udc00USDT", "BTC\u2028"])
        return dumps(gen.wrap(d), Style(ensure_ascii=True))
    text = dumps(gen.wrap(d), Style(ensure_ascii=r.random() < 0.5))
    raw = text.encode("utf-8")
    i = r.randrange(1, len(raw))
    if k == 1:  # an invalid UTF-8 byte, anywhere
        return raw[:i] + bytes([r.choice([0x80, 0xBF, 0xC0, 0xC1, 0xF5, 0xFF])]) + raw[i:]
    if k == 2:  # overlong, encoded surrogate, truncated sequences
        return raw[:i] + r.choice([b"\xc0\xaf", b"\xed\xa0\x80", b"\xe4\xb8", b"\xf0\x9f\x98"]) + raw[i:]
    if k == 3:  # a raw control character inside a string: not JSON
        j = text.index('"s"') + 5
        return text[:j] + r.choice(["\x00", "\n", "\x1f", "\t"]) + text[j:]
    if k == 4:
        boms: list[str | bytes] = [b"\xef\xbb\xbf" + raw, "\ufeff" + text, text.encode("utf-16"),
                                   text.encode("utf-32-le"), text.encode("utf-16-be")]
        return r.choice(boms)
    if k == 5:  # NUL bytes around the frame
        return r.choice([b"\x00" + raw, raw + b"\x00", b"\x00\x00" + raw])
    if k == 6:
        return text.encode("latin-1", "replace") if not text.isascii() else raw
    return gen.encode(text)


def ws_case(rng: random.Random, *, known_bugs: bool = True, max_frame: int = MAX_FRAME) -> Case:
    """One websocket message, by family (weights sum to 100)."""
    filtered = rng.random() < 0.25
    gen = _Gen(rng, known_bugs, filtered)
    family = rng.choices(WS_FAMILIES, _WS_WEIGHTS)[0]
    raw = _WS_MAKERS[family](gen, max_frame)
    return Case(raw, family, gen.bug, filtered)


def _ws_valid(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(gen.wrap(mark_payload(gen.rng, gen.symbol())), gen.style()))


def _ws_valid_array(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    b = gen.bulk()
    items = [mark_payload(b, _symbol(b, gen.filtered)) for _ in range(r.choice([0, 1, 2, 5, 30]))]
    return gen.encode(dumps(gen.wrap(items, ALL_MARKET_STREAM), gen.style()))


def _ws_item(gen: _Gen, _limit: int) -> str | bytes:
    d = mark_payload(gen.rng, gen.symbol())
    return gen.encode(dumps(gen.wrap(gen.mutate_item(d)), gen.style()))


def _ws_array_mixed(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    items: list[Any] = []
    for _ in range(r.randint(1, 12)):
        k = r.randrange(6)
        items.append(gen.payload() if k < 4 else garbage(r) if k == 4 else
                     {"stream": "x", "data": mark_payload(r, gen.symbol())})
    return gen.encode(dumps(gen.wrap(items, ALL_MARKET_STREAM), gen.style()))


def _ws_control(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    msg = r.choice([
        {"result": None, "id": r.randrange(1, 10**6)},
        {"result": ["btcusdt@markPrice@1s"], "id": 2},
        {"error": {"code": 2, "msg": "Invalid request"}, "id": 1},
        {"id": 3, "result": None, "e": "markPriceUpdate"},
        {"result": None},  # no id: not an answer
        {"id": 1},
        {"error": "x"},
        {"id": None, "result": None},
        {"id": [1], "error": {}},
        {"stream": "x", "id": 1, "result": None},
    ])
    return gen.encode(dumps(msg, gen.style()))


def _ws_structure(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    k = r.randrange(8)
    msg: Any
    if k < 3:
        msg = garbage(r)
    elif k == 3:
        msg = {"stream": "btcusdt@markPrice@1s", "data": garbage(r)}
    elif k == 4:
        msg = {"stream": "btcusdt@markPrice@1s"}
    elif k == 5:
        msg = {"data": mark_payload(r, gen.symbol())}  # no "stream": not a combined frame
    elif k == 6:
        msg = {"stream": "a", "data": {"stream": "b", "data": mark_payload(r, gen.symbol())}}
    else:
        msg = [[mark_payload(r, gen.symbol())], None, "x", 5]
    return gen.encode(dumps(msg, gen.style()))


def _ws_text(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    text = dumps(gen.wrap(gen.payload() if r.random() < 0.3 else mark_payload(r, gen.symbol())), gen.style())
    for _ in range(r.randint(1, 3)):
        text = _text_mutation(r, text)
    return gen.encode(text)


def _ws_encoding(gen: _Gen, _limit: int) -> str | bytes:
    return _encoding_case(gen)


def _ws_size(gen: _Gen, limit: int) -> str | bytes:
    r = gen.rng
    k = r.randrange(6)
    if k == 0:
        tiny: list[str | bytes] = ["", b"", " ", "\n", b"\x00", "{", "[", "n", "0", "-", '"', "}", b"\xff",
                                   "null", "[]"]
        return r.choice(tiny)
    if k == 1:
        return bytes([r.randrange(256)])
    if k in (2, 3):
        return _sized(gen, limit)
    if k == 4:  # a big all-market array, under the limit
        b = gen.bulk()
        items = [mark_payload(b, _symbol(b, gen.filtered)) for _ in range(r.choice([500, 1000]))]
        return dumps(items)
    return dumps({"stream": ALL_MARKET_STREAM, "data": "x" * r.choice([limit, limit * 2])})


def _ws_nesting(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    if gen.known_bugs and r.random() < 0.3:
        gen.bug = gen.bug or "json_recursion"
        depth = r.choice([1_500, 10_000, 100_000])
        return r.choice(["[" * depth, "[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
    depth = r.randint(1, 150)
    k = r.randrange(3)
    if k == 0:
        return dumps(nested(r, depth))
    if k == 1:
        return dumps({"stream": "x", "data": nested(r, depth, mark_payload(r, gen.symbol()))})
    d = mark_payload(r, gen.symbol())
    d["x"] = nested(r, depth)
    return dumps(gen.wrap(d))


def _ws_big_symbol(gen: _Gen, limit: int) -> str | bytes:
    """A payload whose symbol is 1 kB .. 100 kB of letters (invalid: too long) and unique."""
    r = gen.rng
    gen.bug = gen.bug or "symbol_cache_unbounded"
    n = r.choice([1_000, 10_000, min(100_000, limit // 4)])
    d = mark_payload(r, "X" * n + str(r.getrandbits(64)))
    return dumps(d) if r.random() < 0.5 else dumps(d).encode()


_WS: dict[str, tuple[int, Callable[[_Gen, int], str | bytes]]] = {
    "valid": (18, _ws_valid), "valid_array": (7, _ws_valid_array), "item_fault": (26, _ws_item),
    "array_mixed": (10, _ws_array_mixed), "control": (4, _ws_control), "structure": (8, _ws_structure),
    "text_mutation": (10, _ws_text), "encoding": (10, _ws_encoding), "size": (2, _ws_size),
    "nesting": (3, _ws_nesting), "big_symbol": (2, _ws_big_symbol),
}
WS_FAMILIES = list(_WS)
_WS_WEIGHTS = [w for w, _ in _WS.values()]
_WS_MAKERS = {k: f for k, (_, f) in _WS.items()}


# -- open interest ------------------------------------------------------------------------------

_OI_SYMBOLS: Final = ("BTCUSDT", "ETHUSDT", "币安人生USDT", "1000PEPEUSDT")


def oi_body(rng: random.Random) -> dict[str, Any]:
    """A valid body; few symbols and times, so the same observation comes twice now and then."""
    d: dict[str, Any] = {"openInterest": price(rng), "symbol": rng.choice(_OI_SYMBOLS),
                         "time": T0 + rng.randrange(8) * 10_000}
    if rng.random() < 0.2:
        d["symbol"] = valid_symbol(rng)
    if rng.random() < 0.2:
        d = {k: d[k] for k in rng.sample(list(d), 3)}
    return d


OI_FAMILIES: Final = ("valid", "field_fault", "structure", "text_mutation", "encoding", "size", "nesting",
                       "error_body")


def oi_case(rng: random.Random, *, known_bugs: bool = True, max_frame: int = MAX_FRAME) -> Case:
    gen = _Gen(rng, known_bugs, False)
    r = rng
    family = r.choices(OI_FAMILIES, [25, 35, 8, 10, 9, 5, 4, 4])[0]
    raw: str | bytes
    if family == "valid":
        raw = gen.encode(dumps(oi_body(r), gen.style()))
    elif family == "field_fault":
        d: dict[str, Any] | Pairs = oi_body(r)
        for _ in range(r.randint(1, 3)):
            assert isinstance(d, dict)
            k = r.randrange(6)
            if k == 0 and d:
                d.pop(r.choice(list(d)))
            elif k == 1:
                d["openInterest"] = gen.pick(NUMBERS)
            elif k == 2:
                d["time"] = gen.pick(EVENT_TIMES)
            elif k == 3:
                sym = gen.pick(SYMBOLS)
                d["symbol"] = sym if not isinstance(sym, list | dict) else 5
            elif k == 4:
                d[r.choice(["x", "code", "msg", "symbol "])] = garbage(r)
            else:
                f = r.choice(list(d) or ["time"])
                d = Pairs([*d.items(), (f, garbage(r))]) if r.random() < 0.5 else Pairs(
                    [(f, garbage(r)), *d.items()])
                break
        raw = gen.encode(dumps(d, gen.style()))
    elif family == "structure":
        raw = gen.encode(dumps(r.choice([garbage(r), [oi_body(r)], {"data": oi_body(r)}, None]), gen.style()))
    elif family == "text_mutation":
        text = dumps(oi_body(r))
        for _ in range(r.randint(1, 3)):
            text = _text_mutation(r, text)
        raw = gen.encode(text)
    elif family == "encoding":
        text = dumps(oi_body(r), Style(ensure_ascii=False))
        bodies: list[str | bytes] = [
            b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16"), "\ufeff" + text,
            text.encode()[:-2] + b"\xff}", text.replace('"symbol":"', '"symbol":"\x00'),
            dumps({"openInterest": "1", "symbol": "\ud800", "time": T0})]
        raw = r.choice(bodies)
    elif family == "size":
        d = oi_body(r)
        d["pad"] = "x" * (max_frame - len(dumps(d)) + r.choice([-10, 0, 1, 2]) - len(',"pad":""'))
        raw = gen.encode(dumps(d))
    elif family == "nesting":
        if known_bugs and r.random() < 0.3:
            gen.bug = gen.bug or "json_recursion"
            raw = "[" * r.choice([1_500, 100_000])
        else:
            d = oi_body(r)
            d["x"] = nested(r, r.randint(1, 150))
            raw = dumps(r.choice([d, nested(r, r.randint(1, 150), d)]))
    else:
        raw = r.choice(['{"code":-1121,"msg":"Invalid symbol."}', '{"code":-1003,"msg":"Too many requests"}',
                        "<html>502 Bad Gateway</html>", ""])
    return Case(raw, family, gen.bug)


# -- exchangeInfo (already parsed: perpetual_listing takes the object) ------------------------

def exchange_info_case(rng: random.Random, *, known_bugs: bool = True) -> Case:
    bug: str | None = None

    def item(r: random.Random) -> Any:
        k = r.randrange(10)
        if k == 0:
            return r.choice([None, "BTCUSDT", 5, [], ["BTCUSDT"]])
        contract = r.choice(["PERPETUAL"] * 4 + ["CURRENT_QUARTER", "perpetual", "PERPETUAL ", "", None, 1])
        status = r.choice(["TRADING"] * 4 + ["SETTLING", "BREAK", "trading", None, ["TRADING"]])
        symbol: Any = valid_symbol(r)
        if r.random() < 0.25:
            symbol = r.choice([None, 5, ["BTCUSDT"], {"s": 1}, True, 1.5])
        elif r.random() < 0.2:  # a symbol the contract refuses: never followed
            symbol = r.choice(["", "btcusdt", "BTC USDT", "BTC\nUSDT", "X" * 65, "BTC\x00", "\ud800",
                               "BTC/USDT", "币" * 22, "BTC\u200b"])
        d: dict[str, Any] = {"symbol": symbol, "contractType": contract, "status": status,
                             "pair": "BTCUSDT", "deliveryDate": 4133404800000}
        for key in r.sample(["symbol", "contractType", "status"], r.choice([0, 0, 0, 1])):
            d.pop(key)
        return d

    r = rng
    k = r.randrange(12)
    info: Any
    if k == 0 and known_bugs:
        bug = "exchange_info_not_object"
        info = r.choice([[], None, "exchangeInfo", 5, [{"symbols": []}]])
    elif k == 1:
        info = r.choice([{}, {"symbols": None}, {"symbols": {}}, {"symbols": "BTCUSDT"}, {"code": -1003}])
    else:
        n = r.choice([0, 1, 3, 10, 50, 700])
        b = r if n <= 3 else random.Random(r.getrandbits(64))
        info = {"timezone": "UTC", "serverTime": T0, "symbols": [item(b) for _ in range(n)]}
    return Case(info, "exchange_info", bug)


# -- the venues read through the venue contract (Bybit, Hyperliquid) -------------------------------
#
# One case is one websocket frame, or a :class:`Burst` of frames fed in order (a delta before
# its snapshot, then the snapshot, then the delta again). The venue harness reads the
# snapshots of BYBIT_BOOK and a push of each HYPERLIQUID_COINS coin first, so deltas for those
# symbols can be merged; what a frame may do is perpstream.fakes.hostile.venue_rules' business.


class Burst(tuple[str | bytes, ...]):
    """Frames fed one after another on one connection, each judged on its own."""


#: Symbols the venue harness gives a snapshot before any case, and its sentinel's symbol.
BYBIT_BOOK: Final = ("BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "币安人生USDT")
BYBIT_SENTINEL: Final = "BTCUSDT"
#: Coins the venue harness reads a push of before any case (so their interval is stated).
HYPERLIQUID_COINS: Final = ("BTC", "ETH", "SOL", "kPEPE", "kSHIB", "HYPE")
HYPERLIQUID_SENTINEL: Final = "BTC"
#: Hyperliquid's frame limit (an activeAssetCtx push is a few hundred bytes).
HYPERLIQUID_MAX_FRAME: Final = 65_536


def decimal_text(rng: random.Random, *, signed: bool = False) -> str:
    """A decimal string as a venue writes one, oddities a decimal may have included."""
    v = price(rng, signed=signed)
    if isinstance(v, Raw):
        return v.text
    return v if isinstance(v, str) else repr(v)


def _plain(pool: Pool) -> list[Any]:
    return [v for v, _ in pool]


#: Values for the venues' number fields, times and names (the pools above, without the
#: Binance bug labels, plus what the venues write differently).
VENUE_NUMBERS: Final = [*_plain(NUMBERS), Raw("1e400"), "1e400", "-0", Raw("9" * 400), 10**30, "0x1p3"]
_TIME_TEXTS: Final = [
    "0", "", "00", str(T0), "000" + str(T0), "0" * 7 + str(T0), "1" * 40, "9" * 400, "-1", "+" + str(T0),
    "1.79e12", " " + str(T0), str(T0) + "\n", str(T0) + ".0", "\u0661\u0667\u0669\u0660" + "0" * 9,
    str(_MAX), str(_MAX - 1), str(_MIN - 1), str(_MIN), "0" * 5000, "\uff11\uff17\uff19\uff10" + "0" * 9,
]
VENUE_TIMES: Final = [*_TIME_TEXTS, *_plain(EVENT_TIMES)]
_BYBIT_SYMBOL_FAULTS: Final = [*_plain(SYMBOLS), "btcusdt", "BTCUSDT ", "tickers.BTCUSDT", "BTC:USDT"]
_TOPICS: Final = ["tickers.", "tickers.btcusdt", "orderbook.1.BTCUSDT", "publicTrade.BTCUSDT",
                  "TICKERS.BTCUSDT", "tickers.BTCUSDT.x", "tickers.BTCUSDT\u0000", "tickers.ETHUSDT",
                  "tickers", "", 5, None, ["tickers.BTCUSDT"], {"t": 1}, "tickers.BTCUSDT ",
                  "tickers.\u200bBTCUSDT"]
_TYPES: Final = ["Snapshot", "DELTA", "", None, 1, "delta ", "snapshotx", ["delta"], True, "update"]
_REQ_IDS: Final = ["1", "42", "", "007", "0", "\u00b2", "\u0661\u0662", "\u0663", "\U0001d7d7", "1e3", "-1",
                   " 1", "9" * 18, "9" * 19, "9" * 50, "9" * 5000, "abc", 5, -1, None, True, [1], {"id": 1},
                   2**64]


def bybit_ticker(rng: random.Random, symbol: str, kind: str = "snapshot",
                 ts: int | None = None) -> dict[str, Any]:
    """A ``tickers.{symbol}`` message as Bybit's docs show one: every field in a snapshot,
    ``symbol`` and some fields in a delta; a fifth of them without funding."""
    ts = T0 + rng.randrange(10**9) if ts is None else ts
    period = 8 * 3_600_000
    full: dict[str, Any] = {
        "symbol": symbol, "tickDirection": rng.choice(["PlusTick", "ZeroMinusTick"]),
        "price24hPcnt": "0.017103", "lastPrice": decimal_text(rng), "prevPrice24h": decimal_text(rng),
        "markPrice": decimal_text(rng), "indexPrice": decimal_text(rng), "openInterest": decimal_text(rng),
        "openInterestValue": decimal_text(rng), "turnover24h": "1570383121.943499", "volume24h": "91705.276",
        "nextFundingTime": str((ts // period + 1) * period), "fundingRate": decimal_text(rng, signed=True),
        "bid1Price": decimal_text(rng), "bid1Size": "84.489", "ask1Price": decimal_text(rng),
        "ask1Size": "83.020", "fundingIntervalHour": "8", "fundingCap": "0.005",
    }
    if rng.random() < 0.2:  # a contract without funding
        full["fundingRate"], full["nextFundingTime"] = "", rng.choice(["0", ""])
    data = full
    if kind == "delta":
        keep = rng.sample(list(full)[1:], rng.randint(0, 6))
        data = {"symbol": symbol, **{k: full[k] for k in keep}}
    return {"topic": "tickers." + symbol, "type": kind, "data": data, "cs": rng.randrange(1, 10**11),
            "ts": ts}


def _bybit_symbol(rng: random.Random, *, known: bool) -> str:
    """A symbol with a snapshot in the harness's book, or one that may have none yet."""
    if known:
        return rng.choice(BYBIT_BOOK)
    return rng.choice([f"NEW{rng.randrange(40)}USDT", valid_symbol(rng)])


def _bybit_message(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.6:
        return bybit_ticker(rng, _bybit_symbol(rng, known=True), "delta")
    return bybit_ticker(rng, _bybit_symbol(rng, known=rng.random() < 0.5), "snapshot")


def _bybit_fault(gen: _Gen, msg: dict[str, Any]) -> Any:
    """1-3 faults in a ticker message: values, times, names, envelope, duplicate keys."""
    r = gen.rng
    out: Any = msg
    data: dict[str, Any] = msg["data"]
    for _ in range(r.randint(1, 3)):
        k = r.randrange(11)
        if k == 0:
            field = r.choice(["markPrice", "indexPrice", "openInterest", "fundingRate"])
            data[field] = r.choice(VENUE_NUMBERS)
        elif k == 1:
            data["fundingRate"] = r.choice(["", " ", "0", "-0.0001", "-", "nan", None, 0, -1.5, Raw("NaN")])
        elif k == 2:
            data["nextFundingTime"] = r.choice(VENUE_TIMES)
        elif k == 3:
            msg["ts"] = r.choice(VENUE_TIMES)
        elif k == 4:
            data["symbol"] = r.choice(_BYBIT_SYMBOL_FAULTS)
        elif k == 5:
            msg[r.choice(["topic", "type"])] = r.choice(_TOPICS + _TYPES)
        elif k == 6:
            if r.random() < 0.5:
                msg.pop(r.choice(["topic", "type", "data", "ts"]), None)
            else:
                data.pop("symbol", None)
        elif k == 7:
            msg["data"] = r.choice([[data], garbage(r), None, "x", [], nested(r, r.randint(1, 50), data)])
            return msg
        elif k == 8:
            data[r.choice(["x", "cs", "data", "topic", "markPrice "])] = garbage(r)
        elif k == 9:
            data["zz"] = nested(r, r.randint(1, 120))
        else:
            f = r.choice(list(data) or ["symbol"])
            pairs = [(key, v) for key, v in data.items() if key != f]
            pairs.insert(r.randrange(len(pairs) + 1), (f, garbage(r)))
            pairs.append((f, data.get(f, "BTCUSDT")) if r.random() < 0.5 else (f, garbage(r)))
            msg["data"] = Pairs(pairs)  # duplicate keys: the last one wins
            return out
    return out


def _bybit_valid(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(_bybit_message(gen.rng), gen.style()))


def _bybit_field(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(_bybit_fault(gen, _bybit_message(gen.rng)), gen.style()))


def _bybit_topic(gen: _Gen, _limit: int) -> str | bytes:
    """A delta or snapshot naming another symbol than its topic, or a topic that is not tickers."""
    r = gen.rng
    msg = _bybit_message(r)
    if r.random() < 0.6:
        other = r.choice([s for s in BYBIT_BOOK if s != msg["data"]["symbol"]] + ["btcusdt", "NEW1USDT"])
        if r.random() < 0.5:
            msg["topic"] = "tickers." + other
        else:
            msg["data"]["symbol"] = other
    else:
        msg["topic"] = r.choice(_TOPICS)
    return gen.encode(dumps(msg, gen.style()))


def _bybit_delta_first(gen: _Gen, _limit: int) -> str | bytes | Burst:
    """A delta for a symbol without a snapshot; sometimes followed by the snapshot and a delta."""
    r = gen.rng
    symbol = f"FRESH{r.getrandbits(32)}USDT" if r.random() < 0.7 else _bybit_symbol(r, known=False)
    ts = T0 + r.randrange(10**9)
    delta = dumps(bybit_ticker(r, symbol, "delta", ts))
    if r.random() < 0.5:
        return delta
    return Burst((delta, dumps(bybit_ticker(r, symbol, "snapshot", ts + 100)),
                  dumps(bybit_ticker(r, symbol, "delta", ts + 200)),
                  dumps(_bybit_fault(gen, bybit_ticker(r, symbol, "delta", ts + 300)))))


def _bybit_control(gen: _Gen, _limit: int) -> str | bytes:
    """Answers as Bybit writes them, with ids, ops and flags that are not ours."""
    r = gen.rng
    rid = r.choice(_REQ_IDS) if r.random() < 0.7 else str(r.randrange(1, 10**6))
    conn = "c9fbd0c5-5b1f-4e43-9b87-3bd4e5b8d2d3"
    msg = r.choice([
        {"success": True, "ret_msg": "", "conn_id": conn, "req_id": rid, "op": "subscribe"},
        {"success": True, "ret_msg": "", "conn_id": conn, "req_id": rid, "op": "unsubscribe"},
        {"success": False, "ret_msg": "Invalid symbol :[tickers.XUSDT]", "conn_id": conn, "req_id": rid,
         "op": "subscribe"},
        {"success": True, "ret_msg": "pong", "conn_id": conn, "req_id": rid, "op": "ping"},
        {"op": "pong", "args": [str(T0)], "conn_id": conn},
        {"success": False, "conn_id": conn, "req_id": rid, "op": "subscribe"},
        {"success": False, "ret_msg": r.choice([5, None, ["x"]]), "req_id": rid},
        {"success": "true", "ret_msg": "", "req_id": rid, "op": "subscribe"},
        {"success": True, "op": r.choice(["auth", "Subscribe", None, 1, ""]), "req_id": rid},
        {"success": True, "ret_msg": "pong", "op": "ping", "topic": "tickers.BTCUSDT"},
        {}, {"req_id": rid}, {"op": "ping"},
    ])
    return gen.encode(dumps(msg, gen.style()))


def _bybit_structure(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    msg: Any = r.choice([
        garbage(r), [_bybit_message(r)], {"topic": "tickers.BTCUSDT"}, {"data": _bybit_message(r)["data"]},
        {"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": T0, "data": [_bybit_message(r)["data"]]},
        {"topic": "tickers.BTCUSDT", "type": "delta", "ts": T0, "data": {}}, None, "tickers.BTCUSDT", 5,
    ])
    return gen.encode(dumps(msg, gen.style()))


def _venue_text(gen: _Gen, msg: Any) -> str | bytes:
    text = dumps(msg, gen.style())
    for _ in range(gen.rng.randint(1, 3)):
        text = _text_mutation(gen.rng, text)
    return gen.encode(text)


def _venue_encoding(gen: _Gen, msg: dict[str, Any], name: dict[str, Any], key: str) -> str | bytes:
    """A valid message in a broken or unusual encoding; ``name[key]`` is its symbol or coin."""
    r = gen.rng
    k = r.randrange(8)
    if k == 0:  # escaped control characters or a lone surrogate inside the name
        name[key] = r.choice(["BTC\u0000USDT", "\u001f", "BTC\ud800", "\udc00USDT", "BTC\u2028"])
        return dumps(msg, Style(ensure_ascii=True))
    text = dumps(msg, Style(ensure_ascii=r.random() < 0.5))
    raw = text.encode("utf-8")
    i = r.randrange(1, len(raw))
    if k == 1:
        return raw[:i] + bytes([r.choice([0x80, 0xBF, 0xC0, 0xC1, 0xF5, 0xFF])]) + raw[i:]
    if k == 2:
        return raw[:i] + r.choice([b"\xc0\xaf", b"\xed\xa0\x80", b"\xe4\xb8", b"\xf0\x9f\x98"]) + raw[i:]
    if k == 3:  # a raw control character inside a string: not JSON
        j = text.index(f'"{key}"') + len(key) + 4
        return text[:j] + r.choice(["\x00", "\n", "\x1f", "\t"]) + text[j:]
    if k == 4:
        boms: list[str | bytes] = [b"\xef\xbb\xbf" + raw, "\ufeff" + text, text.encode("utf-16"),
                                   text.encode("utf-32-le")]
        return r.choice(boms)
    if k == 5:
        return r.choice([b"\x00" + raw, raw + b"\x00"])
    return gen.encode(text)


def _padded(gen: _Gen, msg: dict[str, Any], inner: dict[str, Any], limit: int) -> str | bytes:
    """A valid message padded (inside ``inner``) to the limit, one byte over, or one under."""
    r = gen.rng
    target = limit + r.choice([-1, 0, 1, 2, 1000])
    pad_char = r.choice(["x", "币"])
    inner["pad"] = ""
    base = len(dumps(msg, Style(ensure_ascii=False)).encode("utf-8"))
    inner["pad"] = pad_char * max(0, (target - base) // len(pad_char.encode("utf-8")))
    text = dumps(msg, Style(ensure_ascii=False))
    return text if r.random() < 0.5 else text.encode("utf-8")


def deep(rng: random.Random, depth: int) -> Raw:
    """Arrays and objects nested ``depth`` deep, as text (past what a writer recurses through)."""
    opens = [rng.choice(["[", '{"a":']) for _ in range(depth)]
    return Raw("".join(opens) + "1" + "".join("]" if o == "[" else "}" for o in reversed(opens)))


def _venue_nesting(gen: _Gen, msg: dict[str, Any], inner: dict[str, Any]) -> str | bytes:
    r = gen.rng
    k = r.randrange(4)
    if k == 0:
        depth = r.choice([990, 1_100, 1_500, 100_000])
        return r.choice(["[" * depth, "[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth])
    if k == 1:
        return dumps(nested(r, r.randint(1, 150), msg))
    inner["x"] = deep(r, r.choice([r.randint(1, 150), 990, 1_020]))
    return dumps(msg)


def _bybit_text(gen: _Gen, _limit: int) -> str | bytes:
    return _venue_text(gen, _bybit_message(gen.rng))


def _bybit_encoding(gen: _Gen, _limit: int) -> str | bytes:
    msg = _bybit_message(gen.rng)
    return _venue_encoding(gen, msg, msg["data"], "symbol")


def _bybit_size(gen: _Gen, limit: int) -> str | bytes:
    msg = _bybit_message(gen.rng)
    return _padded(gen, msg, msg["data"], limit)


def _bybit_nesting(gen: _Gen, _limit: int) -> str | bytes:
    msg = _bybit_message(gen.rng)
    return _venue_nesting(gen, msg, msg["data"])


def _bybit_big_symbol(gen: _Gen, limit: int) -> str | bytes:
    """A ticker whose symbol (and topic) is 1 kB .. 100 kB and unique: never a symbol."""
    r = gen.rng
    symbol = "X" * r.choice([1_000, 10_000, min(100_000, limit // 4)]) + str(r.getrandbits(64))
    return dumps(bybit_ticker(r, symbol, r.choice(["snapshot", "delta"])))


VenueMaker = Callable[[_Gen, int], "str | bytes | Burst"]
_BYBIT: dict[str, tuple[int, VenueMaker]] = {
    "valid": (20, _bybit_valid), "field_fault": (28, _bybit_field), "topic": (6, _bybit_topic),
    "delta_first": (6, _bybit_delta_first), "control": (8, _bybit_control),
    "structure": (6, _bybit_structure),
    "text_mutation": (8, _bybit_text), "encoding": (8, _bybit_encoding), "size": (3, _bybit_size),
    "nesting": (4, _bybit_nesting), "big_symbol": (3, _bybit_big_symbol),
}
BYBIT_FAMILIES: Final = tuple(_BYBIT)


def bybit_case(rng: random.Random, *, max_frame: int = MAX_FRAME) -> Case:
    """One Bybit frame (or burst), by family."""
    gen = _Gen(rng, True, False)
    family = rng.choices(BYBIT_FAMILIES, [w for w, _ in _BYBIT.values()])[0]
    return Case(_BYBIT[family][1](gen, max_frame), family)


# -- Hyperliquid activeAssetCtx --------------------------------------------------------------------

_COIN_FAULTS: Final = [
    "", " BTC", "BTC ", "BT C", "BTC\n", "BTC\t", "BTC\x00", "\x00", "BTC\x7f", "BTC\u0085", "BTC\u00a0",
    "BTC\u200b", "BTC\u202e", "\ufeffBTC", "BTC\u2028", "B" * 65, "币" * 22, "@107", "@0", "PURR/USDC",
    "xyz:TSLA", "BTC.X", "BTC$", "🚀", "\ue000", "\ud800", "\u0378", 5, None, True, ["BTC"], {"coin": "BTC"},
]


def hyperliquid_coin(rng: random.Random) -> str:
    """A perpetual's coin as ``meta`` may spell it: the harness's coins, ``k`` coins, lower case."""
    k = rng.randrange(6)
    if k < 3:
        return rng.choice(HYPERLIQUID_COINS)
    if k == 3:
        return rng.choice(["kBONK", "kLUNC", "btc", "kpepe", "Ab_1-x", "1000X"])
    if k == 4:
        return f"COIN{rng.randrange(40)}"
    s = valid_symbol(rng)
    return s if rules.symbol_problem(s, "hyperliquid") is None else "BTC"


def _hl_number(rng: random.Random, *, signed: bool = False) -> Any:
    """The wire's decimal string mostly; the number the type definitions name sometimes."""
    if rng.random() < 0.75:
        return decimal_text(rng, signed=signed)
    x = rng.choice([0.0, 0.5, 97015.0, 1e-8, 123456789.123, 1e300])
    x = -x if signed and rng.random() < 0.5 else x
    return rng.choice([x, int(x), Raw(repr(x)), Raw(f"{x:.3e}")])


def hyperliquid_push(rng: random.Random, coin: Any) -> dict[str, Any]:
    """An activeAssetCtx push of a perp ctx, every field as the venue's docs list them."""
    mark = _hl_number(rng)
    ctx: dict[str, Any] = {
        "funding": _hl_number(rng, signed=True), "openInterest": _hl_number(rng),
        "prevDayPx": decimal_text(rng), "dayNtlVlm": decimal_text(rng),
        "premium": decimal_text(rng, signed=True),
        "oraclePx": _hl_number(rng), "markPx": mark, "midPx": rng.choice([mark, None]),
        "impactPxs": rng.choice([[decimal_text(rng)] * 2, None]), "dayBaseVlm": decimal_text(rng),
    }
    if rng.random() < 0.2:
        ctx = {k: ctx[k] for k in rng.sample(list(ctx), len(ctx))}
    return {"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}}


def _hl_fault(gen: _Gen, msg: dict[str, Any]) -> Any:
    """1-3 faults: ctx fields missing or hostile, the coin, the channel, the envelope."""
    r = gen.rng
    data, ctx = msg["data"], msg["data"]["ctx"]
    for _ in range(r.randint(1, 3)):
        k = r.randrange(9)
        if k == 0:
            ctx.pop(r.choice(["markPx", "oraclePx", "funding", "openInterest"]), None)
        elif k in (1, 2):
            ctx[r.choice(["markPx", "oraclePx", "funding", "openInterest"])] = r.choice(VENUE_NUMBERS)
        elif k == 3:
            data["coin"] = r.choice(_COIN_FAULTS)
        elif k == 4:
            msg["channel"] = r.choice(["activeSpotAssetCtx", "activeassetctx", "", None, 5, "l2Book"])
        elif k == 5:
            if r.random() < 0.7:
                data.pop(r.choice(["coin", "ctx"]), None)
            else:
                msg.pop("data")
            return msg
        elif k == 6:
            data["ctx"] = r.choice([None, [], "ctx", [ctx], 5, garbage(r)])
            return msg
        elif k == 7:
            ctx[r.choice(["premium", "midPx", "impactPxs", "x", "coin"])] = garbage(r)
        else:
            f = r.choice(list(ctx) or ["markPx"])
            pairs = [(key, v) for key, v in ctx.items() if key != f] + [(f, garbage(r)), (f, ctx.get(f, "1"))]
            data["ctx"] = Pairs(pairs if r.random() < 0.5 else pairs[::-1])
            return msg
    return msg


def _hl_message(rng: random.Random) -> dict[str, Any]:
    return hyperliquid_push(rng, hyperliquid_coin(rng))


def _hl_valid(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(_hl_message(gen.rng), gen.style()))


def _hl_field(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(_hl_fault(gen, _hl_message(gen.rng)), gen.style()))


def _hl_coin(gen: _Gen, _limit: int) -> str | bytes:
    """Coins with whitespace, control or format characters, spot names, lower case, other types."""
    r = gen.rng
    coin: Any = r.choice([*_COIN_FAULTS, "btc", "kPEPE", "Kpepe", "\uff22\uff34\uff23", "币安"])
    return gen.encode(dumps(hyperliquid_push(r, coin), gen.style()))


def _hl_spot(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    spot_ctx = {"prevDayPx": "0.2", "dayNtlVlm": "1.0", "markPx": "0.2", "midPx": "0.2",
                "circulatingSupply": "1", "coin": "PURR/USDC", "totalSupply": "1", "dayBaseVlm": "1"}
    msg = r.choice([
        {"channel": "activeSpotAssetCtx", "data": {"coin": r.choice(["@107", "PURR/USDC"]), "ctx": spot_ctx}},
        {"channel": "activeSpotAssetCtx", "data": hyperliquid_push(r, "BTC")["data"]},
        hyperliquid_push(r, r.choice(["@107", "@1", "PURR/USDC", "HYPE/USDC"])),
    ])
    return gen.encode(dumps(msg, gen.style()))


def _hl_control(gen: _Gen, _limit: int) -> str | bytes:
    """Answers as Hyperliquid writes them, some with subscriptions, texts or data that are not."""
    r = gen.rng
    coin = r.choice([*HYPERLIQUID_COINS, *_COIN_FAULTS[:6], 5, None])
    sub = {"type": "activeAssetCtx", "coin": coin}
    msg = r.choice([
        {"channel": "pong"}, {"channel": "pong", "data": garbage(r)},
        {"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}},
        {"channel": "subscriptionResponse", "data": r.choice([None, [], "x", {"subscription": garbage(r)}])},
        {"channel": "error", "data": "Already subscribed: " + dumps(sub)},
        {"channel": "error", "data": r.choice(["", "Invalid subscription: {", "x" * 500, "a {b} {c}"])},
        {"channel": "error", "data": r.choice([garbage(r), deep(r, r.choice([10, 500, 990, 1_020]))])},
        {"channel": "error"},
    ])
    if r.random() < 0.1:
        hello = "Websocket connection established."
        greetings: list[str | bytes] = [hello, hello.encode(), hello + "\n", hello.lower()]
        return r.choice(greetings)
    return gen.encode(dumps(msg, gen.style()))


def _hl_structure(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    msg: Any = r.choice([
        garbage(r), [_hl_message(r)], {"channel": "activeAssetCtx"}, {"data": _hl_message(r)["data"]},
        {"channel": "activeAssetCtx", "data": [_hl_message(r)["data"]]},
        {"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": {}}}, None, "activeAssetCtx", 5,
    ])
    return gen.encode(dumps(msg, gen.style()))


def _hl_text(gen: _Gen, _limit: int) -> str | bytes:
    return _venue_text(gen, _hl_message(gen.rng))


def _hl_encoding(gen: _Gen, _limit: int) -> str | bytes:
    msg = _hl_message(gen.rng)
    return _venue_encoding(gen, msg, msg["data"], "coin")


def _hl_size(gen: _Gen, limit: int) -> str | bytes:
    msg = _hl_message(gen.rng)
    return _padded(gen, msg, msg["data"]["ctx"], limit)


def _hl_nesting(gen: _Gen, _limit: int) -> str | bytes:
    msg = _hl_message(gen.rng)
    return _venue_nesting(gen, msg, msg["data"]["ctx"])


def _hl_big_coin(gen: _Gen, limit: int) -> str | bytes:
    r = gen.rng
    coin = "X" * r.choice([1_000, 10_000, limit // 4]) + str(r.getrandbits(64))
    return dumps(hyperliquid_push(r, coin))


_HYPERLIQUID: dict[str, tuple[int, VenueMaker]] = {
    "valid": (20, _hl_valid), "field_fault": (24, _hl_field), "coin": (10, _hl_coin), "spot": (4, _hl_spot),
    "control": (8, _hl_control), "structure": (6, _hl_structure), "text_mutation": (8, _hl_text),
    "encoding": (8, _hl_encoding), "size": (3, _hl_size), "nesting": (5, _hl_nesting),
    "big_symbol": (3, _hl_big_coin),
}
HYPERLIQUID_FAMILIES: Final = tuple(_HYPERLIQUID)


def hyperliquid_case(rng: random.Random, *, max_frame: int = HYPERLIQUID_MAX_FRAME) -> Case:
    """One Hyperliquid frame, by family."""
    gen = _Gen(rng, True, False)
    family = rng.choices(HYPERLIQUID_FAMILIES, [w for w, _ in _HYPERLIQUID.values()])[0]
    return Case(_HYPERLIQUID[family][1](gen, max_frame), family)


# -- OKX v5 pushes ---------------------------------------------------------------------------------

#: The swaps the venue harness follows (its listing), each with the index it is priced on.
OKX_SWAPS: Final = {"BTC-USDT-SWAP": "BTC-USDT", "ETH-USDT-SWAP": "ETH-USDT", "PEPE-USDT-SWAP": "PEPE-USDT",
                    "BTC-USDC-SWAP": "BTC-USDC"}
OKX_SENTINEL: Final = "BTC-USDT-SWAP"
OKX_CHANNELS: Final = ("mark-price", "index-tickers", "funding-rate", "open-interest")
_OKX_INST_FAULTS: Final = [*_plain(SYMBOLS), "btc-usdt-swap", "BTC/USDT-SWAP", "BTC.USDT-SWAP",
                            "BTC-USDT-SWAP "]
_OKX_INDEX_FAULTS: Final = ["DOGE-USDT", "btc-usdt", "BTC-USDT-SWAP", "BTC-USD", "", "BTC USDT", 5, None]
_OKX_CHANNEL_FAULTS: Final = ["tickers", "mark-price ", "MARK-PRICE", "", None, 5, "candle1m", ["mark-price"],
                              "price-limit", "funding-rate\u0000"]


def okx_item(rng: random.Random, channel: str, inst: str, ts: int | None = None) -> dict[str, Any]:
    """One data item of a push as OKX's docs show it, every value a string."""
    ts = T0 + rng.randrange(10**9) if ts is None else ts
    if channel == "mark-price":
        return {"instType": "SWAP", "instId": inst, "markPx": decimal_text(rng), "ts": str(ts)}
    if channel == "index-tickers":
        return {"instId": inst, "idxPx": decimal_text(rng), "high24h": decimal_text(rng), "low24h": "36900",
                "open24h": "37000", "sodUtc0": "37100", "sodUtc8": "37050", "ts": str(ts)}
    if channel == "open-interest":
        return {"instId": inst, "instType": "SWAP", "oi": decimal_text(rng), "oiCcy": decimal_text(rng),
                "oiUsd": decimal_text(rng), "ts": str(ts)}
    period = rng.choice([8, 8, 4, 2, 1]) * 3_600_000
    at = (ts // period + 1) * period
    return {"formulaType": "noRate", "fundingRate": rng.choice([decimal_text(rng, signed=True), ""]),
            "fundingTime": str(at), "impactValue": "", "instId": inst, "instType": "SWAP", "interestRate": "",
            "method": "current_period", "maxFundingRate": "0.00375", "minFundingRate": "-0.00375",
            "nextFundingRate": "", "nextFundingTime": str(at + period), "premium": "0.0001233824646391",
            "settFundingRate": "0.0001699799259033", "settState": "settled", "ts": str(ts)}


def okx_push(rng: random.Random, channel: str | None = None, inst: str | None = None,
             items: int | None = None) -> dict[str, Any]:
    """A push of one channel for a listed swap (or index), with one to a few items."""
    channel = channel or rng.choice(OKX_CHANNELS)
    swap = rng.choice(sorted(OKX_SWAPS))
    inst = inst or (OKX_SWAPS[swap] if channel == "index-tickers" else swap)
    ts = T0 + rng.randrange(10**9)
    n = items if items is not None else rng.choice([1, 1, 1, 2, 3])
    data = [okx_item(rng, channel, inst, ts + 100 * i) for i in range(n)]
    if rng.random() < 0.1:
        for d in data:
            d.pop("instId")  # items need not repeat the arg's instId
    return {"arg": {"channel": channel, "instId": inst}, "data": data}


def _okx_item_fault(gen: _Gen, item: dict[str, Any]) -> Any:
    """One fault in one item: its value, its times, the funding times' order, oi for oiCcy."""
    r = gen.rng
    value = next((f for f in ("markPx", "idxPx", "oiCcy", "fundingRate") if f in item), "markPx")
    k = r.randrange(9)
    if k == 0:
        item[value] = r.choice(VENUE_NUMBERS)
    elif k == 1:
        item[r.choice(["ts", "fundingTime", "nextFundingTime"] if value == "fundingRate" else ["ts"])] = \
            r.choice(VENUE_TIMES)
    elif k == 2 and value == "fundingRate":  # fundingTime after nextFundingTime, equal, or not minutes apart
        at, nxt = int(item["fundingTime"]), int(item["nextFundingTime"])
        item["fundingTime"], item["nextFundingTime"] = r.choice(
            [(str(nxt), str(at)), (str(at), str(at)), (str(at), str(nxt + 1)), (str(at), "")])
        if r.random() < 0.3:
            item.pop("nextFundingTime")
    elif k == 3 and value == "oiCcy":  # the contracts figure without the coin figure, or garbage in it
        item.pop("oiCcy") if r.random() < 0.5 else item.update(oi=r.choice(VENUE_NUMBERS))
    elif k == 4:
        item.pop(r.choice([value, "ts"]))
    elif k == 5:
        item["instId"] = r.choice([*OKX_SWAPS, *OKX_SWAPS.values(), "btc-usdt-swap", 5, None])
    elif k == 6:
        item[r.choice(["x", "oi", "instType", "arg"])] = garbage(r)
    elif k == 7:
        return r.choice([None, "x", 5, [item], garbage(r)])
    else:
        f = r.choice(list(item))
        extra = (f, garbage(r))
        return Pairs([extra, *item.items()] if r.random() < 0.5 else [*item.items(), extra])
    return item


def _okx_valid(gen: _Gen, _limit: int) -> str | bytes:
    return gen.encode(dumps(okx_push(gen.rng), gen.style()))


def _okx_field(gen: _Gen, _limit: int) -> str | bytes:
    msg = okx_push(gen.rng, items=1)
    msg["data"][0] = _okx_item_fault(gen, msg["data"][0])
    return gen.encode(dumps(msg, gen.style()))


def _okx_multi(gen: _Gen, _limit: int) -> str | bytes:
    """Several items of which one is bad: the push is read whole or rejected whole."""
    r = gen.rng
    msg = okx_push(r, items=r.randint(2, 5))
    i = r.randrange(len(msg["data"]))
    msg["data"][i] = _okx_item_fault(gen, msg["data"][i])
    return gen.encode(dumps(msg, gen.style()))


def _okx_funding(gen: _Gen, _limit: int) -> str | bytes:
    """Funding pushes whose two times are in order, out of order, equal, or not minutes apart."""
    r = gen.rng
    msg = okx_push(r, "funding-rate", items=r.choice([1, 1, 2]))
    for item in msg["data"]:
        if r.random() < 0.6:
            at, nxt = int(item["fundingTime"]), int(item["nextFundingTime"])
            item["fundingTime"], item["nextFundingTime"] = r.choice(
                [(str(nxt), str(at)), (str(at), str(at)), (str(at), str(nxt + 1)),
                 (str(at), str(at + 90_000)), (str(at), "")])
    return gen.encode(dumps(msg, gen.style()))


def _okx_index(gen: _Gen, _limit: int) -> str | bytes:
    """Index tickers for an index no listed swap is priced on, or one that is."""
    r = gen.rng
    inst = r.choice(_OKX_INDEX_FAULTS) if r.random() < 0.7 else r.choice(sorted(OKX_SWAPS.values()))
    msg = okx_push(r, "index-tickers", inst if isinstance(inst, str) else "BTC-USDT")
    msg["arg"]["instId"] = inst
    return gen.encode(dumps(msg, gen.style()))


def _okx_arg(gen: _Gen, _limit: int) -> str | bytes:
    """The arg and the envelope: channels, instIds, shapes that are not a push's."""
    r = gen.rng
    msg: dict[str, Any] = okx_push(r)
    k = r.randrange(6)
    if k == 0:
        msg["arg"]["channel"] = r.choice(_OKX_CHANNEL_FAULTS)
    elif k == 1:  # the items name it too (or not at all), so only the name is wrong
        msg["arg"]["instId"] = inst = r.choice(_OKX_INST_FAULTS)
        for item in msg["data"]:
            if r.random() < 0.8:
                item["instId"] = inst
            else:
                item.pop("instId", None)
    elif k == 2:
        msg["arg"] = r.choice([None, "mark-price", [msg["arg"]], {"channel": "mark-price"}, {"instId": "X"}])
    elif k == 3:
        msg.pop(r.choice(["arg", "data"]))
    elif k == 4:
        msg["data"] = r.choice([None, {}, msg["data"][0], "x", []])
    else:
        msg["event"] = r.choice(["subscribe", "error", "notice", None])
    return gen.encode(dumps(msg, gen.style()))


def _okx_control(gen: _Gen, _limit: int) -> str | bytes:
    """Answers as OKX writes them, with ids and args that are not the producer's."""
    r = gen.rng
    rid = r.choice([*_REQ_IDS, "1" * 32, "1" * 33]) if r.random() < 0.7 else str(r.randrange(1, 10**6))
    arg = r.choice([{"channel": "mark-price", "instId": "BTC-USDT-SWAP"}, {"channel": 5}, None, "x"])
    msg: Any = r.choice([
        {"id": rid, "event": "subscribe", "arg": arg, "connId": "a4d3ae55"},
        {"id": rid, "event": "unsubscribe", "arg": arg, "connId": "a4d3ae55"},
        {"id": rid, "event": "error", "code": "60018", "msg": "Wrong URL or channel:mark-price,instId:X-SWAP "
         "doesn't exist. Please use the correct URL, channel and parameters referring to API document.",
         "connId": "a4d3ae55"},
        {"event": "error", "code": "60012", "msg": "Invalid request: {\"op\": \"subscribe\"}", "connId": "x"},
        {"event": "notice", "code": "64008", "msg": "The connection will soon be closed", "connId": "x"},
        {"event": "channel-conn-count", "channel": "mark-price", "connCount": "2", "connId": "x"},
        {"event": r.choice(["Subscribe", "", None, 5, ["subscribe"]]), "id": rid},
    ])
    if r.random() < 0.15:
        texts: list[str | bytes] = ["pong", b"pong", "ping", "PONG", "pong\n", ""]
        return r.choice(texts)
    return gen.encode(dumps(msg, gen.style()))


def _okx_structure(gen: _Gen, _limit: int) -> str | bytes:
    r = gen.rng
    msg: Any = r.choice([garbage(r), [okx_push(r)], okx_push(r)["data"], {"arg": okx_push(r)["arg"]}, None,
                         "mark-price", 5, {"data": okx_push(r)["data"]}])
    return gen.encode(dumps(msg, gen.style()))


def _okx_text(gen: _Gen, _limit: int) -> str | bytes:
    return _venue_text(gen, okx_push(gen.rng))


def _okx_encoding(gen: _Gen, _limit: int) -> str | bytes:
    msg = okx_push(gen.rng)
    return _venue_encoding(gen, msg, msg["arg"], "instId")


def _okx_size(gen: _Gen, limit: int) -> str | bytes:
    msg = okx_push(gen.rng, items=1)
    return _padded(gen, msg, msg["data"][0], limit)


def _okx_nesting(gen: _Gen, _limit: int) -> str | bytes:
    msg = okx_push(gen.rng, items=1)
    return _venue_nesting(gen, msg, msg["data"][0])


def _okx_big_symbol(gen: _Gen, limit: int) -> str | bytes:
    r = gen.rng
    inst = "X" * r.choice([1_000, 10_000, min(100_000, limit // 4)]) + str(r.getrandbits(64))
    channel = r.choice(OKX_CHANNELS)
    msg = okx_push(r, channel, inst, items=1)
    return dumps(msg)


_OKX: dict[str, tuple[int, VenueMaker]] = {
    "valid": (18, _okx_valid), "field_fault": (18, _okx_field), "multi_item": (10, _okx_multi),
    "funding": (8, _okx_funding), "index": (5, _okx_index), "arg": (8, _okx_arg),
    "control": (8, _okx_control),
    "structure": (4, _okx_structure), "text_mutation": (6, _okx_text), "encoding": (6, _okx_encoding),
    "size": (3, _okx_size), "nesting": (3, _okx_nesting), "big_symbol": (3, _okx_big_symbol),
}
OKX_FAMILIES: Final = tuple(_OKX)


def okx_case(rng: random.Random, *, max_frame: int = MAX_FRAME) -> Case:
    """One OKX frame, by family."""
    gen = _Gen(rng, True, False)
    family = rng.choices(OKX_FAMILIES, [w for w, _ in _OKX.values()])[0]
    return Case(_OKX[family][1](gen, max_frame), family)


def venue_primer(venue: str) -> list[str]:
    """What the venue harness reads before any case: a snapshot of every BYBIT_BOOK symbol,
    a funding push of every OKX_SWAPS swap, a push of every HYPERLIQUID_COINS coin."""
    rng = random.Random(f"primer:{venue}")
    if venue == "bybit":
        return [dumps(bybit_ticker(rng, s, "snapshot", T0)) for s in BYBIT_BOOK]
    if venue == "okx":
        return [dumps(okx_push(rng, "funding-rate", s, items=1)) for s in sorted(OKX_SWAPS)]
    return [dumps(hyperliquid_push(rng, c)) for c in HYPERLIQUID_COINS]


def venue_sentinel(venue: str) -> str:
    """The valid frame fed after every case: it must always be read, exactly (a delta of a
    symbol the primer gave a snapshot, a push of a coin whose interval is stated)."""
    if venue == "bybit":
        return dumps({"topic": "tickers." + BYBIT_SENTINEL, "type": "delta", "ts": T0 + 1, "cs": 7,
                      "data": {"symbol": BYBIT_SENTINEL, "markPrice": "64240.38", "fundingRate": "-0.0001",
                               "lastPrice": "64239.5"}})
    if venue == "okx":
        return dumps({"arg": {"channel": "mark-price", "instId": OKX_SENTINEL}, "data": [
            {"instType": "SWAP", "instId": OKX_SENTINEL, "markPx": "37212.5", "ts": str(T0 + 1)}]})
    return dumps({"channel": "activeAssetCtx", "data": {"coin": HYPERLIQUID_SENTINEL, "ctx": {
        "funding": "0.0000125", "openInterest": "26142.5", "prevDayPx": "96000.0", "dayNtlVlm": "1.0",
        "premium": "0.0001", "oraclePx": "97005.0", "markPx": "97015.0", "midPx": "97015.5",
        "impactPxs": ["97014.0", "97016.0"], "dayBaseVlm": "1.0"}}})
