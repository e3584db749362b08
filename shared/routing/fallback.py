"""Failure handling for a request's route hierarchy: deadlines, bounded attempts, circuit breakers.

Rules (both programs share them so a trace reads the same everywhere):

* each target is tried **at most once** per request, in the order given (cheapest first after the
  policy's choice), and at most ``max_attempts`` targets in all;
* every attempt gets the time left until the request's deadline, never more;
* a 4xx answer is the request's fault: no other target would do better, so it is raised at once —
  except 408 and 429, which say "not now, not here" and move on to the next target;
* a *declined* call (a healthy target that holds no answer for this request, such as a replay of
  recorded answers without this prompt) moves on to the next target without counting as a failure;
* each target has a ``CircuitBreaker``: after ``failure_threshold`` consecutive failures it is skipped
  for ``reset_after_s``, then one probe request decides whether it closes again.

A caller reports a failed call as ``AttemptFailed`` (its place in the tree of errors:
``shared.errors``); any other exception is not the chain's to judge and goes straight through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from shared.wire import TraceStep

R = TypeVar("R")
Clock = Callable[[], float]
_MOVE_ON_4XX = frozenset({408, 429})
# outcomes that do not use up one of a request's attempts: nothing ran, or the target declined at once
_NOT_TRIED = frozenset({"circuit_open", "no_time", "declined"})


class AttemptFailed(Exception):
    """One target's failed call; ``status`` is the HTTP-like status when the backend gave one;
    ``declined``: the target works but cannot serve this request; ``retryable``: the same request
    may succeed there later."""

    def __init__(
        self, message: str, status: int | None = None, *, declined: bool = False, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.status = status
        self.declined = declined
        self.retryable = retryable

    @property
    def is_client_error(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status not in _MOVE_ON_4XX


class AllTargetsFailed(Exception):
    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__(
            "; ".join(f"{a.target}: {a.outcome} {a.error}" for a in attempts) or "no target to try"
        )
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """Whether any target that failed said the same request may succeed later."""
        return any(a.retryable for a in self.attempts)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, failure_threshold: int = 3, reset_after_s: float = 30.0, clock: Clock = time.monotonic
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_after_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a request go through now? In half-open state only one probe at a time."""
        st = self.state
        if st is BreakerState.CLOSED:
            return True
        if st is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._probing = False


@dataclass(frozen=True)
class Attempt:
    target: str
    outcome: str  # "ok", "error", "timeout", "client_error", "declined", "circuit_open", "no_time"
    elapsed_ms: float = 0.0
    error: str = ""
    retryable: bool = False  # a failed or declined call's own word; False where nothing was said

    def to_trace_step(self) -> TraceStep:
        decision = (
            "answer"
            if self.outcome == "ok"
            else ("skip" if self.outcome in ("circuit_open", "no_time", "declined") else "error")
        )
        return TraceStep(
            stage=self.target,
            decision=decision,
            reason=self.outcome,
            elapsed_ms=self.elapsed_ms,
            detail={"error": self.error} if self.error else {},
        )


@dataclass
class FallbackResult(Generic[R]):
    value: R
    target: str
    attempts: list[Attempt] = field(default_factory=list)


class FallbackChain:
    """Holds one breaker per target name; call ``run`` once per request."""

    def __init__(
        self,
        max_attempts: int = 3,
        failure_threshold: int = 3,
        reset_after_s: float = 30.0,
        min_attempt_s: float = 0.05,
        clock: Clock = time.monotonic,
    ) -> None:
        self.max_attempts = max_attempts
        self.min_attempt_s = min_attempt_s
        self._clock = clock
        self._threshold, self._reset = failure_threshold, reset_after_s
        self._breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, target: str) -> CircuitBreaker:
        if target not in self._breakers:
            self._breakers[target] = CircuitBreaker(self._threshold, self._reset, self._clock)
        return self._breakers[target]

    async def run(
        self,
        targets: Sequence[str],
        call: Callable[[str, float], Awaitable[R]],
        deadline: float,
    ) -> FallbackResult[R]:
        """Try ``targets`` in order; ``call(target, seconds_left)``; ``deadline`` on this chain's clock."""
        attempts: list[Attempt] = []
        for target in dict.fromkeys(targets):  # each target once, in the order first named
            if sum(a.outcome not in _NOT_TRIED for a in attempts) >= self.max_attempts:
                break
            left = deadline - self._clock()
            if left < self.min_attempt_s:
                attempts.append(Attempt(target, "no_time"))
                break
            if not self.breaker(target).allow():
                attempts.append(Attempt(target, "circuit_open"))
                continue
            result = await self._attempt(target, call, left, attempts)
            if result is not None:
                return result
        raise AllTargetsFailed(attempts)

    async def _attempt(
        self, target: str, call: Callable[[str, float], Awaitable[R]], left: float, attempts: list[Attempt]
    ) -> FallbackResult[R] | None:
        """One call of ``target``, recorded in ``attempts`` and its breaker; the result when it answered.

        A client error is raised: the next target would refuse the same request."""
        brk = self.breaker(target)
        start = self._clock()
        try:
            value = await asyncio.wait_for(call(target, left), timeout=left)
        except AttemptFailed as exc:
            ms = (self._clock() - start) * 1000
            if exc.is_client_error:
                # the backend is healthy; the request is wrong
                brk.record_success()
                attempts.append(Attempt(target, "client_error", ms, str(exc), exc.retryable))
                raise
            if exc.declined:
                # it answered, so it is healthy: a run of such requests must not open its breaker
                brk.record_success()
                attempts.append(Attempt(target, "declined", ms, str(exc), exc.retryable))
                return None
            brk.record_failure()
            attempts.append(Attempt(target, "error", ms, str(exc), exc.retryable))
            return None
        except TimeoutError:
            brk.record_failure()
            attempts.append(Attempt(target, "timeout", (self._clock() - start) * 1000))
            return None
        brk.record_success()
        attempts.append(Attempt(target, "ok", (self._clock() - start) * 1000))
        return FallbackResult(value, target, attempts)
