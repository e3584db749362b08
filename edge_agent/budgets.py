"""Per-tenant spend caps that concurrency cannot get around.

A tenant's ``budget_usd`` caps what its answers cost per window of ``budget_window_s`` (windows
start at multiples of it, in UTC epoch seconds). Checking the spend so far and adding each cost
afterwards lets every request that arrives before the first one finishes through: 100 requests at
once all see the same spend. So each request instead *reserves* the most it can cost before any
route runs, in one transaction against the spend and every reservation still open, and settles to
its real cost when it ends. The spend thus stays within the budget as long as no answer costs more
than its reservation, which holds when ``hub_price_ceiling`` is at least every hub tier's price.

Over budget the request is refused with a 429 ``budget_exceeded``, cache hits and local answers
included: a cap that sometimes answers and sometimes does not would be harder to plan for than
one that stops, and the local model is not free in the cost model either.

The maximum cost of a request is its token bound at the dearest price of the routes it may take:
``max_tokens`` completion tokens plus a prompt bound of one token per byte of the prompt and a
template allowance per message (no byte-level tokenizer makes more), priced at the local model's
rate and, when the request may escalate, at ``hub_price_ceiling`` plus the local draft's tokens.

Spend and open reservations live in SQLite (``<home>/budgets.db``), so a restart does not reset
a tenant's spend. Reservations left by a process that died are charged in full when the ledger is
next opened: the calls they covered may have been served. One agent per file.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.request import Answer, Delta, InferenceRequest
from shared import sqlite
from shared.config import CostModel, TenantConfig

# template tokens a chat turn may add around its content (role markers, separators), and once
# per prompt (a default system turn, the generation prompt); generous for the common templates
_TURN_ALLOWANCE = 16
_PROMPT_ALLOWANCE = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
    tenant TEXT NOT NULL,
    window_start REAL NOT NULL,
    spent_usd REAL NOT NULL,
    PRIMARY KEY (tenant, window_start)
);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    window_start REAL NOT NULL,
    amount_usd REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_by_tenant ON holds (tenant, window_start);
"""
_ADD_SPEND = """
INSERT INTO spend (tenant, window_start, spent_usd) VALUES (?, ?, ?)
ON CONFLICT (tenant, window_start) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd
"""


class BudgetExceeded(Exception):
    def __init__(self, tenant: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.tenant = tenant
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Hold:
    """A request's reservation: ``amount_usd`` counted against its tenant until settled."""

    id: int
    tenant: str
    window_start: float
    amount_usd: float


class BudgetLedger:
    """Spend per tenant and window, and the reservations of requests in progress."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite.connect(path)
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._charge_orphans()

    def _charge_orphans(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            rows = self._conn.execute("SELECT tenant, window_start, amount_usd FROM holds").fetchall()
            self._conn.executemany(_ADD_SPEND, rows)
            self._conn.execute("DELETE FROM holds")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def window_start(self, window_s: float) -> float:
        return math.floor(self._clock() / window_s) * window_s

    def reserve(self, tenant: str, limit_usd: float, window_s: float, amount_usd: float) -> Hold:
        """Hold ``amount_usd`` for ``tenant``, or raise ``BudgetExceeded`` when the spend so far,
        the open holds and this one would pass ``limit_usd`` (or the spend already reached it)."""
        start = self.window_start(window_s)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                spent, held = self._usage(tenant, start)
                if spent + held + amount_usd > limit_usd or spent + held >= limit_usd:
                    conn.execute("ROLLBACK")
                    raise _exceeded(tenant, limit_usd, spent, amount_usd, start + window_s - self._clock())
                cursor = conn.execute(
                    "INSERT INTO holds (tenant, window_start, amount_usd, created_at) VALUES (?, ?, ?, ?)",
                    (tenant, start, amount_usd, self._clock()),
                )
                conn.execute("COMMIT")
            except BudgetExceeded:
                raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        assert cursor.lastrowid is not None
        return Hold(cursor.lastrowid, tenant, start, amount_usd)

    def settle(self, hold: Hold, cost_usd: float) -> None:
        """Replace the hold by the real cost, in the window the hold was taken in. Idempotent."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                gone = conn.execute("DELETE FROM holds WHERE id = ?", (hold.id,)).rowcount
                if gone:
                    conn.execute(_ADD_SPEND, (hold.tenant, hold.window_start, max(0.0, cost_usd)))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def usage(self, tenant: str, window_s: float) -> tuple[float, float]:
        """(spent, held) of ``tenant`` in the current window."""
        with self._lock:
            return self._usage(tenant, self.window_start(window_s))

    def _usage(self, tenant: str, start: float) -> tuple[float, float]:
        conn = self._conn
        row = conn.execute(
            "SELECT spent_usd FROM spend WHERE tenant = ? AND window_start = ?", (tenant, start)
        ).fetchone()
        (held,) = conn.execute(
            "SELECT COALESCE(SUM(amount_usd), 0.0) FROM holds WHERE tenant = ? AND window_start = ?",
            (tenant, start),
        ).fetchone()
        return (float(row[0]) if row else 0.0), float(held)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _exceeded(tenant: str, limit: float, spent: float, amount: float, window_left_s: float) -> BudgetExceeded:
    if amount > limit:
        message = (
            f"This request may cost up to ${amount:.6f}, more than the ${limit:.6f} budget of its "
            "tenant; lower max_tokens or shorten the prompt."
        )
        return BudgetExceeded(tenant, message, math.ceil(window_left_s))
    if spent + amount > limit:  # only the window's end frees enough
        message = (
            f"The tenant's budget of ${limit:.6f} for this period has ${max(0.0, limit - spent):.6f} "
            f"left, less than this request may cost (${amount:.6f}); lower max_tokens or wait for "
            "the next period."
        )
        return BudgetExceeded(tenant, message, max(1, math.ceil(window_left_s)))
    # the budget is reserved by requests still in progress; they settle below their reservation
    message = f"The tenant's budget of ${limit:.6f} is reserved by requests in progress; try again shortly."
    return BudgetExceeded(tenant, message, 1)


def prompt_token_bound(req: InferenceRequest) -> int:
    """At most this many prompt tokens, for any byte-level tokenizer and common chat template."""
    if req.prompt is not None:
        return len(req.prompt.encode("utf-8")) + _PROMPT_ALLOWANCE
    turns = sum(len(m.content.encode("utf-8")) + len(m.name or "") + _TURN_ALLOWANCE for m in req.messages)
    return turns + _PROMPT_ALLOWANCE


class Budgets:
    """The tenants' caps over one ledger, and the most each request may cost."""

    def __init__(
        self,
        tenants: Sequence[TenantConfig],
        ledger: BudgetLedger,
        *,
        local_cost: CostModel,
        hub_price_ceiling: CostModel,
        draft_tokens: int,
        hub_timeout_s: float,
    ) -> None:
        self._caps = {t.name: t for t in tenants if t.budget_usd is not None}
        self.ledger = ledger
        self.local_cost = local_cost
        self.hub_price_ceiling = hub_price_ceiling
        self.draft_tokens = draft_tokens
        self.hub_timeout_s = hub_timeout_s

    def max_cost(self, req: InferenceRequest, may_escalate: bool) -> float:
        prompt, completion = prompt_token_bound(req), req.params.max_tokens
        local = self.local_cost.estimate(prompt, completion)
        if not may_escalate:
            return local
        # an escalated answer costs the hub's reply and the local draft it was judged on
        hub = self.hub_price_ceiling.estimate(prompt, completion, self.hub_timeout_s)
        return max(local, hub + self.local_cost.estimate(0, self.draft_tokens))

    async def reserve(self, req: InferenceRequest, may_escalate: bool) -> Hold | None:
        """The request's hold, ``None`` when its tenant has no cap; ``BudgetExceeded`` if over."""
        if req.ctx.tenant not in self._caps:
            return None
        return await self.reserve_usd(req.ctx.tenant, self.max_cost(req, may_escalate))

    async def reserve_usd(self, tenant: str, amount_usd: float) -> Hold | None:
        """Hold ``amount_usd`` (a request's maximum cost, priced by its caller) for ``tenant``."""
        cap = self._caps.get(tenant)
        if cap is None or cap.budget_usd is None:
            return None
        return await asyncio.to_thread(
            self.ledger.reserve, cap.name, cap.budget_usd, cap.budget_window_s, amount_usd
        )

    async def settle(self, hold: Hold, cost_usd: float) -> None:
        # shielded: a cancelled request must still release its hold, or it is charged in full later
        await asyncio.shield(asyncio.to_thread(self.ledger.settle, hold, cost_usd))

    async def metered(
        self,
        req: InferenceRequest,
        may_escalate: bool,
        events: AsyncGenerator[Delta | Answer, None],
        asked_hub: Callable[[], bool],
    ) -> AsyncGenerator[Delta | Answer, None]:
        """``events`` (not started yet) run under the request's hold, settled at its answer's cost.

        A request that ends without an answer is charged its whole reservation when the hub was
        asked or some text reached the client (the call may have been served), else nothing."""
        hold = await self.reserve(req, may_escalate)
        released = False
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, Answer) and hold is not None:
                        await self.settle(hold, event.cost_usd)
                        hold = None
                    released = released or isinstance(event, Delta)
                    yield event
        finally:
            if hold is not None:
                await self.settle(hold, hold.amount_usd if released or asked_hub() else 0.0)

    def close(self) -> None:
        self.ledger.close()
