"""The fake Binance's ``GET /fapi/v1/fundingInfo`` answers as Binance documents it: only the
adjusted symbols, weight 0, in the pool it shares with ``fundingRate``; and the producer's
reading of it gives every followed perpetual its interval."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from perpstream.fakes.binance import FakeBinance, default_funding_intervals
from perpstream.producer.binance import load_json
from perpstream.producer.funding_info import funding_info_url, funding_intervals

pytestmark = pytest.mark.integration

SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT_261225"]


def get(url: str) -> tuple[int, dict[str, str], Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_default_lists_a_few_perpetuals_with_the_documented_fields() -> None:
    with FakeBinance(SYMBOLS) as fake:
        status, headers, body = get(funding_info_url(fake.rest_url))
        weight_before = int(headers["X-MBX-USED-WEIGHT-1M"])
        status2, headers2, _ = get(funding_info_url(fake.rest_url))
    assert status == status2 == 200
    assert int(headers2["X-MBX-USED-WEIGHT-1M"]) == weight_before  # weight 0
    assert body == [
        {"symbol": s, "adjustedFundingRateCap": "0.02500000", "adjustedFundingRateFloor": "-0.02500000",
         "fundingIntervalHours": h, "disclaimer": False}
        for s, h in (("BBBUSDT", 8), ("CCCUSDT", 4), ("DDDUSDT", 1))]
    assert fake.rest_requests.count(("fundingInfo", None, 200)) == 2
    table = funding_intervals(body, ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"])
    assert table.hours == {"AAAUSDT": 8.0, "BBBUSDT": 8.0, "CCCUSDT": 4.0, "DDDUSDT": 1.0}
    assert table.hours == {s: float(fake.funding_interval_hours(s)) for s in table.hours}


def test_few_symbols_list_nothing_by_default_and_a_test_chooses_its_own() -> None:
    assert default_funding_intervals(["AAAUSDT", "BBBUSDT", "CCCUSDT_261225"]) == {}
    with FakeBinance(["AAAUSDT"], funding_intervals={"AAAUSDT": 2, "GONEUSDT": 4},
                     extra_funding_info=[{"symbol": "AAAUSDT", "fundingIntervalHours": "x"}, 5]) as fake:
        status, _, body = get(funding_info_url(fake.rest_url))
        assert status == 200
        named = [x["symbol"] if isinstance(x, dict) else x for x in body]
        assert named == ["AAAUSDT", "GONEUSDT", "AAAUSDT", 5]
        table = funding_intervals(load_json(json.dumps(body)), fake.listing)
        assert table.hours == {} and set(table.rejected) == {"AAAUSDT", "5"}
        fake.funding_intervals = {}
        fake.extra_funding_info = []
        assert get(funding_info_url(fake.rest_url))[2] == []


def test_faults_and_the_pool_shared_with_funding_rate() -> None:
    with FakeBinance(["AAAUSDT"]) as fake:
        fake.fail_funding_info(418, retry_after=7)
        status, headers, body = get(funding_info_url(fake.rest_url))
        assert (status, headers["Retry-After"], body["code"]) == (418, "7", -1003)
        # fundingRate spends half the pool, fundingInfo the rest, and meets its end
        rate = f"{fake.rest_url}/fapi/v1/fundingRate?symbol=AAAUSDT&limit=1"
        answers = [get(rate)[0] for _ in range(250)] + \
            [get(funding_info_url(fake.rest_url))[0] for _ in range(252)]
        assert answers[:500] == [200] * 500 and answers[500:] == [429, 429]
        assert fake.rest_requests[-1] == ("fundingInfo", None, 429)
