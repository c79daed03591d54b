"""An MLflow client for work that must not stop for tracking: a search, a retrain, an ensemble.

Every call goes through ``call(what, fn, *args)``: a failure is one warning line and the work
goes on. A tracking server that stops answering is waited for, not given up on: the calls made
meanwhile are kept, in order, and made once it answers again (asked at most every
``PROBE_EVERY_S``); ``report_missed`` names those it never answered. A server that does not
answer when the work starts turns tracking off at once (MLflow retries a dead server for minutes
per call: the work must not wait on it).

What goes to which run is the caller's business (search/tracking.py, search/retrain.py,
search/ensemble.py): a kept call is replayed as it was asked for, so a call that depends on an
earlier one (a run's id) reads it when it runs, not when it is asked for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from mlflow import MlflowClient

from hpsearch.plumbing.servers import reachable, redact, tracking_server

T = TypeVar("T")
PROBE_EVERY_S = 5.0  # while the tracking server is down, how often to ask whether it is back


class BufferedMlflow:
    """One MLflow store, for one piece of work that goes on whatever the store does.

    ``tracking_uri`` None is MLflow's own default (``MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db``). Warnings go to ``log``, the caller's logger, and say that ``work``
    (``"the search"``) goes on; ``kept_where`` is a sentence for the end, if some calls were never
    logged, saying where the results are kept instead. ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        tracking_uri: str | None,
        *,
        log: logging.Logger,
        work: str,
        kept_where: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracking_uri = tracking_uri or None
        self.log, self.work, self.kept_where, self.clock = log, work, kept_where, clock
        self._client: MlflowClient | None = None
        self.off: str | None = None  # why tracking stopped, once it has
        # While the server does not answer: the calls it missed, in order, to make when it is back.
        self.missed: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._down_since: float | None = None  # clock() when it stopped answering
        self._next_probe = 0.0  # when to ask again whether it answers

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def down(self) -> bool:
        """Whether the server has stopped answering (and calls are being kept for it)."""
        return self._down_since is not None

    def server(self) -> str | None:
        """The tracking server's address; None for a local store."""
        return tracking_server(self.tracking_uri)

    def answers(self) -> bool:
        """Whether tracking is on: False once it is off, and turned off now (one warning) if the
        store is a server that does not answer."""
        if self.off:
            return False
        server = self.server()
        if server and not reachable(server):
            self.turn_off(f"no MLflow server answers at {server}")
            return False
        return True

    def turn_off(self, why: str) -> None:
        self.off = why
        self.log.warning("MLflow: %s; %s goes on without tracking", why, self.work)

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None with a one-line warning about ``what``: tracking never stops the
        work. While the server does not answer, the call is kept for when it does."""
        if self.off:
            return None
        if self._down_since is not None and not self._back():
            self.missed.append((what, fn, args))
            return None
        try:
            return fn(*args)
        except Exception as e:
            server = self.server()
            if server and not reachable(server):
                self._went_down(server)
                self.missed.append((what, fn, args))
            else:
                self.log.warning("MLflow: %s failed: %s", what, one_line(e))
            return None

    def probe_now(self) -> None:
        """Ask at the next call whether the server is back (the work's last chance to log)."""
        self._next_probe = 0.0

    def report_missed(self) -> None:
        """Say what could not be logged, if anything: the server never came back."""
        if not self.missed:
            return
        whats = [what for what, _, _ in self.missed]
        shown = "; ".join(whats[:6]) + (f"; and {len(whats) - 6} more" if len(whats) > 6 else "")
        self.log.warning(
            "MLflow: the server at %s did not answer again: %d calls not logged (%s).%s",
            redact(self.server() or ""),
            len(whats),
            shown,
            f" {self.kept_where}" if self.kept_where else "",
        )

    def _went_down(self, server: str) -> None:
        if self._down_since is None:
            self._down_since = self.clock()
            self._next_probe = self._down_since + PROBE_EVERY_S
            self.log.warning(
                "MLflow: the server at %s stopped answering; %s goes on and logs what it misses "
                "once the server answers again",
                redact(server),
                self.work,
            )

    def _back(self) -> bool:
        """Whether the server answers again (asked at most every ``PROBE_EVERY_S``); if so, make
        the calls it missed, in order. False while it does not, or stops again meanwhile."""
        if self.clock() < self._next_probe:
            return False
        self._next_probe = self.clock() + PROBE_EVERY_S
        server = self.server()
        if server and not reachable(server, timeout_s=2.0):
            return False
        missed, self.missed = self.missed, []
        down_s = self.clock() - (self._down_since if self._down_since is not None else self.clock())
        self._down_since = None
        for i, (what, fn, args) in enumerate(missed):
            self.call(what, fn, *args)
            if self._down_since is not None:  # down again: the rest waits, in order, behind it
                self.missed += missed[i + 1 :]
                return False
        self.log.warning(
            "MLflow: the server at %s answers again after %.0f s; logged the %d calls it missed",
            redact(server or ""),
            down_s,
            len(missed),
        )
        return True


def one_line(error: BaseException) -> str:
    """``ValueError: its message's first line``, at most 500 characters."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}"[:500]
