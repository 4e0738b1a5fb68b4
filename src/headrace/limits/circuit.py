"""A circuit breaker: fail fast while a provider is down, and probe it back.

States, as in the usual pattern:

- **closed**: calls go through; ``failures`` failures in a row that look like
  an outage (what :func:`~headrace.limits.retry.is_retryable` accepts, less
  429s, which mean "later", not "down") open it.
- **open**: for ``reset`` seconds no call is made. By default
  (``when_open="wait"``) calls wait: the items stay in flight, the run's window
  fills and it stops reading its source, so a provider that is down is an
  outage, not a dataset of dead letters. With ``when_open="fail"`` they fail at
  once with :class:`CircuitOpen` instead (for a fallback to take over).
- **half-open**: one call goes through as a probe; success closes the circuit,
  failure opens it for another ``reset``. Other calls keep waiting (or failing).

While the circuit is not closed, an outage-like failure does not spend an
item's attempts: the call waits for the circuit and goes again. When the
circuit has stayed open for ``max_outage`` seconds in all without a success,
waiting calls raise :class:`~headrace.errors.ProviderDown`: the run stops
cleanly, its items unfinished, and a resume carries on.

One ``Circuit`` may guard several steps that call one provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CircuitOpen, PipelineError, ProviderDown
from ..metrics.readings import CircuitReading
from ..values.checks import positive_int
from ..values.durations import to_seconds
from .retry import is_retryable, is_throttle

if TYPE_CHECKING:
    from .call import Call

__all__ = ["Circuit", "CircuitOpen", "CircuitState"]

State = Literal["closed", "open", "half-open"]


class Circuit:
    """A circuit breaker for the steps that carry it (see the module's notes).

    Args:
        failures: outage-like failures in a row that open the circuit.
        reset: how long it stays open before a probe (seconds or ``"30s"``).
        counts: which failures count (default: retryable ones that are not 429s).
        when_open: ``"wait"`` (calls wait for the probe) or ``"fail"`` (calls fail
            at once with :class:`CircuitOpen`).
        max_outage: with ``"wait"``, how long the circuit may stay open in all
            before waiting calls raise :class:`~headrace.errors.ProviderDown`
            (seconds or ``"5m"``).

    Raises:
        PipelineError: an invalid value.
    """

    def __init__(
        self,
        failures: int = 5,
        reset: float | str = 30.0,
        *,
        counts: Callable[[BaseException], bool] | None = None,
        when_open: Literal["wait", "fail"] = "wait",
        max_outage: float | str = 300.0,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        positive_int(failures, "Circuit failures")
        if when_open not in ("wait", "fail"):
            raise PipelineError(f"Circuit when_open must be 'wait' or 'fail', got {when_open!r}")
        self.failures = failures
        self.when_open = when_open
        self.reset_s = to_seconds(reset, option="reset")
        self.max_outage_s = to_seconds(max_outage, option="max_outage")
        self.counts = counts or (lambda error: is_retryable(error) and not is_throttle(error))
        self.clock = _clock

    def new_state(self) -> CircuitState:
        """A closed circuit of these settings, for one run (the steps and clients of a
        run that share this ``Circuit`` share the state; the next run starts closed)."""
        return CircuitState(self)

    def describe(self) -> dict[str, float | int | str]:
        """The settings as plain data."""
        return {
            "failures": self.failures,
            "reset_s": self.reset_s,
            "when_open": self.when_open,
            "max_outage_s": self.max_outage_s,
        }

    def __repr__(self) -> str:
        return (
            f"Circuit(failures={self.failures}, reset={self.reset_s}s, "
            f"when_open={self.when_open!r}, max_outage={self.max_outage_s}s)"
        )


class CircuitState:
    """One run's circuit: its state (closed, open, half-open), counts and verbs.

    Attributes:
        settings: the :class:`Circuit` it follows.
        state: ``"closed"``, ``"open"`` or ``"half-open"``.
        opened: how many times it opened; ``refused`` calls failed fast
            (``when_open="fail"``); ``held`` calls waited while it was open.
    """

    def __init__(self, settings: Circuit) -> None:
        self.settings = settings
        self.failures = settings.failures
        self.when_open = settings.when_open
        self.reset_s = settings.reset_s
        self.max_outage_s = settings.max_outage_s
        self.counts = settings.counts
        self.clock = settings.clock
        self.state: State = "closed"
        self.in_a_row = 0
        self.opened_at = 0.0
        self.probing = False
        self.opened = 0
        self.refused = 0
        self.held = 0
        self.outage_s = 0.0  # time spent open in the current outage, before opened_at
        self.last_error = ""
        self.answers = 0  # calls the provider answered (a success, or an error of the call's own)

    # -- a policy of the gate ---------------------------------------------------------

    def enter(self, call: Call) -> Coroutine[Any, Any, None] | None:
        """Let the call go while closed; else wait for its turn (see :meth:`wait_turn`)."""
        if self.state == "closed":
            return None
        return self._take_turn(call)

    async def _take_turn(self, call: Call) -> None:
        started = time.perf_counter()
        try:
            call.probe = await self.wait_turn(call.name)
        finally:
            # an outage's hold is counted apart (waiting, never working): the wait for
            # a slot starts once the circuit lets the call go
            call.started = time.perf_counter()
            if call.metrics is not None:
                call.metrics.hold_s += call.started - started

    def leave(self, call: Call, error: BaseException | None) -> None:
        """Count how the call ended; a cancelled probe passes its turn on."""
        if error is None:
            self.succeeded()
        elif isinstance(error, Exception):
            self.failed(error)
        elif call.probe:
            self.probing = False

    def undecided(self, error: BaseException, answers_before: int) -> bool:
        """Whether a call whose attempts ran out on ``error`` cannot be blamed on its
        item yet: an outage-like failure, and the provider has answered no call since
        ``answers_before`` (:attr:`answers` when the item's first attempt went).

        Such an item goes on trying (with its backoff) until the provider answers
        someone (then the failure is the item's own) or the circuit opens (an outage:
        the item waits for it, see :meth:`holds`). ``failures`` failures in a row
        open the circuit, so this ends.
        """
        return self.when_open == "wait" and self.counts(error) and self.answers == answers_before

    async def wait_turn(self, name: str) -> bool:
        """Wait until a call may go; return whether it is the probe.

        Raises:
            CircuitOpen: the circuit is open and ``when_open="fail"``.
            ProviderDown: it has been open ``max_outage`` seconds in this outage.
        """
        held = False
        while True:
            if self.allow():
                return self.state == "half-open"
            if self.when_open == "fail":
                raise CircuitOpen(f"{name}: the circuit is open after repeated failures")
            if not held:
                held = True
                self.held += 1
            down = self.down_s()
            if down >= self.max_outage_s:
                raise ProviderDown(
                    f"{name} looks down: its circuit was open {down:.0f} s in all "
                    f"(max_outage {self.max_outage_s:g} s, {self.opened} opening(s)); "
                    f"last error: {self.last_error}"
                )
            # until the probe's turn; while a probe is out, look again now and then
            until_probe = self.opened_at + self.reset_s - self.clock()
            await asyncio.sleep(min(until_probe + 0.001 if until_probe > 0 else 0.05, 1.0))

    def holds(self, error: BaseException) -> bool:
        """Whether a call that failed with ``error`` should wait for the circuit and go
        again without spending an attempt: an outage-like failure while it is not closed."""
        return self.when_open == "wait" and self.state != "closed" and self.counts(error)

    def down_s(self) -> float:
        """How long the circuit has been open in the current outage (0 when closed)."""
        if self.state == "closed":
            return 0.0
        return self.outage_s + (self.clock() - self.opened_at)

    def statistics(self) -> CircuitReading:
        """A snapshot of the circuit's state and counts."""
        return CircuitReading(
            state=self.state,
            when_open=self.when_open,
            opened=self.opened,
            refused=self.refused,
            held=self.held,
            down_s=self.down_s(),
            max_outage_s=self.max_outage_s,
            last_error=self.last_error,
        )

    def allow(self) -> bool:
        """Whether a call may go now (taking the probe's turn when half-open)."""
        if self.state == "open" and self.clock() - self.opened_at >= self.reset_s:
            self.state = "half-open"
        if self.state == "closed":
            return True
        if self.state == "half-open" and not self.probing:
            self.probing = True
            return True
        if self.when_open == "fail":
            self.refused += 1
        return False

    def succeeded(self) -> None:
        """A call went through: close the circuit, ending the outage."""
        self.answers += 1
        self.state = "closed"
        self.in_a_row = 0
        self.probing = False
        self.outage_s = 0.0

    def failed(self, error: BaseException) -> None:
        """A call failed with ``error``: count it, and open the circuit if it is time."""
        if self.counts(error):
            self.last_error = f"{type(error).__name__}: {error}"[:300]
        if self.probing:
            self.probing = False
            if self.counts(error):
                self._open()
            else:  # the provider answered: it is up, whatever the answer
                self.succeeded()
            return
        if not self.counts(error):
            self.in_a_row = 0
            self.answers += 1
            return
        self.in_a_row += 1
        if self.state == "closed" and self.in_a_row >= self.failures:
            self._open()

    def _open(self) -> None:
        now = self.clock()
        if self.state != "closed":  # a failed probe: the outage goes on
            self.outage_s += now - self.opened_at
        self.state = "open"
        self.opened_at = now
        self.opened += 1
        self.in_a_row = 0

    def __repr__(self) -> str:
        return f"CircuitState({self.settings!r}, state={self.state!r}, opened={self.opened})"
