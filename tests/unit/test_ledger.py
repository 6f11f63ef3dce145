"""The ledger books fills into the book and records round trips, including for a position it did
not open (carried in from the broker's account when a session starts)."""

from __future__ import annotations

import math

import pytest

from trader_runtime.execution.costs import Fill
from trader_runtime.trading.book import Book, Ledger, average_entry


def _fill(qty: float, price: float, commission: float = 1.0) -> Fill:
    return Fill(qty, price, price, commission, 0.0, 0.0)


def test_a_carried_in_position_is_sold_without_a_round_trip_and_the_book_stays_right() -> None:
    book = Book(1, cash=1_000.0)
    book.position[0] = 100.0  # from the account: the ledger never opened it
    ledger = Ledger(("AAA",), book)
    ledger.book_fill(0, 1, 0, _fill(-150.0, 10.0), "exit", "bull")  # close it and go short 50
    assert book.position[0] == -50.0
    assert book.cash == pytest.approx(1_000.0 + 1_500.0 - 1.0)
    assert book.avg_entry[0] == 10.0  # the short's entry
    assert len(ledger.fills) == 1
    assert ledger.trades == []  # the carried part has no round trip
    ledger.book_fill(1, 2, 0, _fill(50.0, 9.0), "exit", "bull")  # cover the short
    assert book.position[0] == 0.0
    assert math.isnan(book.avg_entry[0])
    (trade,) = ledger.trades  # the short the ledger opened is a round trip
    assert trade["side"] == "short"
    assert trade["qty"] == 50.0
    assert trade["entry_price_usd"] == 10.0
    assert trade["exit_price_usd"] == 9.0
    # the short's own flows: its share of the first fill's cash (50 of 150) and the cover's
    assert trade["pnl_usd"] == pytest.approx(50 * 10.0 - 1.0 / 3 - 50 * 9.0 - 1.0)


@pytest.mark.parametrize(
    ("old_qty", "old_avg", "fill_qty", "price", "expected"),
    [
        (0.0, math.nan, 100.0, 10.0, 10.0),  # opened at the fill
        (100.0, 10.0, 300.0, 20.0, 17.5),  # enlarged: averaged by shares
        (-100.0, 10.0, -100.0, 20.0, 15.0),  # a short enlarged
        (100.0, 10.0, -40.0, 20.0, 10.0),  # reduced: keeps its entry
        (100.0, 10.0, -100.0, 20.0, math.nan),  # flat: none
        (100.0, 10.0, -150.0, 20.0, 20.0),  # flipped: the flipping fill
        (100.0, math.nan, 50.0, 20.0, math.nan),  # unknown stays unknown when enlarged
        (100.0, math.nan, -150.0, 20.0, 20.0),  # ... and is known again once flipped
    ],
)
def test_the_average_entry_rule(
    old_qty: float, old_avg: float, fill_qty: float, price: float, expected: float
) -> None:
    got = average_entry(old_qty, old_avg, fill_qty, price)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_a_carried_in_position_with_a_known_cost_averages_what_the_ledger_adds() -> None:
    book = Book(1, cash=1_000.0)
    book.position[0] = 100.0  # from the account, with its average cost
    book.avg_entry[0] = 8.0
    ledger = Ledger(("AAA",), book)
    ledger.book_fill(0, 1, 0, _fill(100.0, 12.0), "entry", "bull")
    assert book.position[0] == 200.0
    assert book.avg_entry[0] == 10.0
    ledger.book_fill(1, 2, 0, _fill(-50.0, 11.0), "exit", "bull")
    assert book.avg_entry[0] == 10.0  # a reduction keeps the entry
