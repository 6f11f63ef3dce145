from datetime import UTC, date, datetime

import pytest

from trader_runtime.errors import UnknownSymbolError
from trader_runtime.market.timeframes import Timeframe
from trader_runtime.market.validation import validate_bars
from trader_runtime.sources.base import BarRequest
from trader_runtime.sources.index_history import IndexHistorySource


@pytest.mark.parametrize("symbol", ["SP500", "NASDAQ"])
def test_real_index_history_covers_1999_to_2018_on_the_nyse_calendar(symbol: str) -> None:
    bars = IndexHistorySource().load(BarRequest(symbol, date(1999, 1, 1), date(2018, 12, 31)))
    assert bars.height == 5031
    assert bars["ts"].min() == datetime(1999, 1, 4, 21, 0, tzinfo=UTC)
    assert bars["ts"].max() == datetime(2018, 12, 31, 21, 0, tzinfo=UTC)
    result = validate_bars(bars, timeframe=Timeframe.D1)
    assert result.quarantined.height == 0
    assert result.gaps.missing_bars == 0


def test_sp500_close_matches_the_published_figure() -> None:
    bars = IndexHistorySource().load(BarRequest("SP500", date(2008, 10, 10), date(2008, 10, 10)))
    assert bars["close"].item() == pytest.approx(899.22, abs=0.01)


def test_a_daily_bar_on_an_early_close_is_stamped_at_the_early_close() -> None:
    bars = IndexHistorySource().load(BarRequest("SP500", date(2018, 11, 23), date(2018, 11, 23)))
    assert bars["ts"].item() == datetime(2018, 11, 23, 18, 0, tzinfo=UTC)


def test_an_unknown_index_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownSymbolError, match="SP500, NASDAQ"):
        IndexHistorySource().load(BarRequest("DOW", date(2000, 1, 1), date(2000, 2, 1)))
