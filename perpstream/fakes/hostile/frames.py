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
