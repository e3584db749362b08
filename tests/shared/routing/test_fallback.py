from __future__ import annotations

import asyncio

import pytest

from shared.routing.fallback import (
    AllTargetsFailed,
    AttemptFailed,
    BreakerState,
    CircuitBreaker,
    FallbackChain,
)


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backends:
    """Per-target behaviour: 'ok', 'fail', a status code, or 'slow'."""

    def __init__(self, behaviour: dict[str, object]) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []

    async def __call__(self, target: str, left: float) -> str:
        self.calls.append(target)
        b = self.behaviour[target]
        if b == "ok":
            return f"answer from {target}"
        if b == "slow":
            await asyncio.sleep(5)
            return "late"
        if isinstance(b, int):
            raise AttemptFailed(f"{target} said {b}", status=b)
        if b == "decline":
            raise AttemptFailed(f"{target} holds no answer to this", declined=True)
        raise AttemptFailed(f"{target} broke")


async def test_falls_back_in_order_and_tries_each_target_once() -> None:
    b = Backends({"oss": "fail", "frontier": "ok"})
    chain = FallbackChain()
    result = await chain.run(["oss", "oss", "frontier", "oss"], b, deadline=1e18)
    assert result.value == "answer from frontier" and result.target == "frontier"
    assert b.calls == ["oss", "frontier"]
    assert [a.outcome for a in result.attempts] == ["error", "ok"]
    assert [s.decision for s in (a.to_trace_step() for a in result.attempts)] == ["error", "answer"]


async def test_attempts_are_bounded() -> None:
    b = Backends({"a": "fail", "b": "fail", "c": "ok"})
    with pytest.raises(AllTargetsFailed) as err:
        await FallbackChain(max_attempts=2).run(["a", "b", "c"], b, deadline=1e18)
    assert b.calls == ["a", "b"]
    assert len(err.value.attempts) == 2


async def test_client_errors_are_not_retried_anywhere() -> None:
    b = Backends({"a": 400, "b": "ok"})
    chain = FallbackChain()
    with pytest.raises(AttemptFailed):
        await chain.run(["a", "b"], b, deadline=1e18)
    assert b.calls == ["a"]
    assert chain.breaker("a").state is BreakerState.CLOSED  # the backend did its job


async def test_rate_limits_move_on() -> None:
    b = Backends({"a": 429, "b": "ok"})
    result = await FallbackChain().run(["a", "b"], b, deadline=1e18)
    assert result.target == "b"


async def test_deadline_bounds_each_attempt() -> None:
    loop = asyncio.get_running_loop()
    b = Backends({"slow": "slow", "b": "ok"})
    chain = FallbackChain(clock=loop.time)
    with pytest.raises(AllTargetsFailed) as err:
        await chain.run(["slow", "b"], b, deadline=loop.time() + 0.2)
    outcomes = [a.outcome for a in err.value.attempts]
    assert outcomes[0] == "timeout"
    assert outcomes[1:] == ["no_time"]  # nothing left for b
    assert b.calls == ["slow"]


async def test_open_breaker_skips_target_until_reset() -> None:
    clock = ManualClock()
    chain = FallbackChain(failure_threshold=2, reset_after_s=30, clock=clock)
    b = Backends({"a": "fail", "b": "ok"})
    for _ in range(2):
        await chain.run(["a", "b"], b, deadline=clock.now + 100)
    assert chain.breaker("a").state is BreakerState.OPEN
    b.calls.clear()
    result = await chain.run(["a", "b"], b, deadline=clock.now + 100)
    assert b.calls == ["b"] and result.attempts[0].outcome == "circuit_open"
    clock.now += 31
    b.behaviour["a"] = "ok"
    result = await chain.run(["a", "b"], b, deadline=clock.now + 100)
    assert result.target == "a"  # the half-open probe went through and closed the breaker
    assert chain.breaker("a").state is BreakerState.CLOSED


async def test_declines_move_on_without_opening_the_breaker() -> None:
    chain = FallbackChain(failure_threshold=2)
    b = Backends({"replay": "decline", "oss": "ok"})
    for _ in range(5):
        result = await chain.run(["replay", "oss"], b, deadline=1e18)
        assert result.target == "oss"
        assert [a.outcome for a in result.attempts] == ["declined", "ok"]
        assert result.attempts[0].to_trace_step().decision == "skip"
    assert chain.breaker("replay").state is BreakerState.CLOSED
    assert b.calls.count("replay") == 5  # asked every time: a decline says nothing of its health
    # and it uses up none of the request's attempts
    one = await FallbackChain(max_attempts=1).run(["replay", "oss"], b, deadline=1e18)
    assert one.target == "oss"


def test_half_open_allows_one_probe_and_reopens_on_failure() -> None:
    clock = ManualClock()
    br = CircuitBreaker(failure_threshold=1, reset_after_s=10, clock=clock)
    br.record_failure()
    assert not br.allow()
    clock.now += 10
    assert br.allow() and not br.allow()  # one probe at a time
    br.record_failure()
    assert br.state is BreakerState.OPEN
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)


async def test_all_failed_is_retryable_when_any_target_said_so() -> None:
    async def call(target: str, left: float) -> str:
        if target == "replay":
            raise AttemptFailed("no record", declined=True, retryable=False)
        raise AttemptFailed(f"{target} is overloaded", retryable=target == "busy")

    chain = FallbackChain()
    with pytest.raises(AllTargetsFailed) as some:
        await chain.run(["replay", "busy", "down"], call, deadline=1e18)
    assert [a.retryable for a in some.value.attempts] == [False, True, False] and some.value.retryable
    with pytest.raises(AllTargetsFailed) as none:
        await chain.run(["replay", "down"], call, deadline=1e18)
    assert not none.value.retryable
