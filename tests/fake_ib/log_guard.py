"""Fail a test when ib_async's decoder drops a message.

ib_async's ``Decoder`` never raises: a message it cannot decode is logged and silently dropped.
The guard captures records of the ``ib_async`` logger tree and fails on the decoder's two texts
(ib_async 2.1.0, ``decoder.py``):

* ``"Error handling fields: <fields>"`` -- ``Decoder.interpret``: a handler raised (unknown message
  id, wrong field count in a strict tuple unpack, ``"10.0"`` in an int field, ...);
* ``"Error for <method>(<args>):"`` -- ``Decoder.wrap``: parsing the fields or the wrapper method
  raised (e.g. too few fields for the wrapper's signature).

Both are logged with ``logger.exception`` on ``ib_async.Decoder``. Not covered: exceptions inside
the client's socket callback (eventkit routes them to an error event nobody listens to) -- those
show up as a handshake that never completes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType

import pytest

IB_LOGGER = "ib_async"
DECODER_ERROR_PREFIXES = ("Error handling fields", "Error for ")


class DecoderErrorsFoundError(AssertionError):
    """ib_async logged at least one decoder error while the guard was active."""


class DecoderErrorGuard(logging.Handler):
    """Context manager capturing ``ib_async`` log records; raises on exit if any record is a
    decoder error (or matches one of ``extra_prefixes``)."""

    def __init__(self, *, extra_prefixes: tuple[str, ...] = ()) -> None:
        super().__init__(level=logging.NOTSET)
        self.prefixes = DECODER_ERROR_PREFIXES + tuple(extra_prefixes)
        self.records: list[logging.LogRecord] = []
        self._saved_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Keep every record that reaches the ``ib_async`` logger."""
        self.records.append(record)

    def messages(self, min_level: int = logging.NOTSET) -> list[str]:
        """Captured messages at or above ``min_level``."""
        return [r.getMessage() for r in self.records if r.levelno >= min_level]

    @property
    def decoder_errors(self) -> list[str]:
        """Captured messages that match the decoder-error prefixes."""
        return [m for m in self.messages() if m.startswith(self.prefixes)]

    def check(self) -> None:
        """Raise ``DecoderErrorsFoundError`` if any decoder error was captured."""
        errors = self.decoder_errors
        if errors:
            listing = "\n".join(f"  {e[:500]}" for e in errors)
            raise DecoderErrorsFoundError(f"ib_async decoder errors:\n{listing}")

    def __enter__(self) -> DecoderErrorGuard:
        ib_logger = logging.getLogger(IB_LOGGER)
        if ib_logger.getEffectiveLevel() > logging.ERROR:
            self._saved_level = ib_logger.level
            ib_logger.setLevel(logging.ERROR)
        ib_logger.addHandler(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ib_logger = logging.getLogger(IB_LOGGER)
        ib_logger.removeHandler(self)
        if self._saved_level is not None:
            ib_logger.setLevel(self._saved_level)
            self._saved_level = None
        if exc_type is None:
            self.check()


@pytest.fixture
def ib_decoder_guard() -> Iterator[DecoderErrorGuard]:
    """Fails the test (at teardown) if ib_async's decoder logged an error during it."""
    with DecoderErrorGuard() as guard:
        yield guard
