"""What an image or video job on the hub holds while it runs: a place and a budget reservation.

Text requests reserve their maximum cost before any route runs (``edge_agent.budgets``) and
hold a place at their route's gate (``edge_agent.admission``); media jobs do the same, or a
tenant with a $0.01 cap could spend without limit on pictures and a flood would queue on the
hub without bound. ``MediaMeter.take`` reserves ``n × steps × usd_per_step`` (``BudgetExceeded``
when the tenant's budget cannot cover it), then admits the job at the media gate (``Overloaded``,
a 429 with ``Retry-After``, when it is full). ``steps`` is the request's, or the
model's default; the prices are the edge's ``images.*_usd_per_step``, which must be at least the
hub's for the cap to hold. Only what goes to the hub is metered: an as-is asset from the edge's
own store costs nothing.

The hub charges a variation that misses the variation guarantee the steps of every attempt, so
such a job can cost more than its reservation; the ledger settles what it really cost.

A ``Charge`` ends once: with the cost the hub reported, or, when the hub never said (no answer
in time, the link dropped, the caller went away), with the whole reservation, since the job may
have run. A typed error from the hub (a refusal, its own overload, a failed job) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.admission import Admission, Releasable
from edge_agent.budgets import Budgets, Hold
from edge_agent.hub_link.errors import HubError, HubTimeout
from edge_agent.images.store import MediaKind
from shared.config import EdgeImageSettings


@dataclass(frozen=True)
class MediaPrices:
    """The most a denoising step costs on the hub, and the steps of a request that names none."""

    image_usd_per_step: float = 0.0
    image_default_steps: int = 20
    video_usd_per_step: float = 0.0
    video_default_steps: int = 20

    @classmethod
    def from_settings(cls, cfg: EdgeImageSettings) -> MediaPrices:
        return cls(
            cfg.image_usd_per_step, cfg.image_default_steps, cfg.video_usd_per_step, cfg.video_default_steps
        )

    def max_cost(self, kind: MediaKind, steps: int, n: int) -> float:
        if kind == "image":
            return n * (steps or self.image_default_steps) * self.image_usd_per_step
        return n * (steps or self.video_default_steps) * self.video_usd_per_step


def may_have_run(exc: BaseException) -> bool:
    """Whether a job that ended in ``exc`` may have been served: unless the hub itself answered
    with a typed error (a timeout is the edge giving up, not the hub declining)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, HubError):
            return isinstance(seen, HubTimeout)
        seen = seen.__cause__
    return True


class Charge:
    """One admitted hub job: its place at the media gate and its hold on the tenant's budget."""

    def __init__(
        self, amount_usd: float, slot: Releasable, hold: Hold | None, budgets: Budgets | None
    ) -> None:
        self.amount_usd = amount_usd
        self._slot = slot
        self._hold = hold
        self._budgets = budgets

    @property
    def open(self) -> bool:
        return self._hold is not None

    async def settle(self, cost_usd: float) -> None:
        """Free the place and charge ``cost_usd`` instead of the reservation. Only the first call
        counts."""
        self._slot.release()
        hold, self._hold = self._hold, None
        if hold is not None and self._budgets is not None:
            await self._budgets.settle(hold, cost_usd)

    async def fail(self, exc: BaseException) -> None:
        """End a job that raised ``exc``: the whole reservation if it may have run, else nothing."""
        await self.settle(self.amount_usd if may_have_run(exc) else 0.0)


class MediaMeter:
    """The media gate and the tenants' budgets, as one admission step for hub jobs."""

    def __init__(
        self,
        prices: MediaPrices,
        *,
        budgets: Budgets | None = None,
        admission: Admission | None = None,
        video_hold_s: float = 3600.0,
    ) -> None:
        self.prices = prices
        self._budgets = budgets
        self._admission = admission or Admission()
        self.video_hold_s = video_hold_s

    @classmethod
    def from_settings(
        cls, cfg: EdgeImageSettings, budgets: Budgets | None, admission: Admission | None
    ) -> MediaMeter:
        return cls(
            MediaPrices.from_settings(cfg),
            budgets=budgets,
            admission=admission,
            video_hold_s=cfg.video_hold_s,
        )

    async def take(self, tenant: str, kind: MediaKind, steps: int, n: int) -> Charge:
        """A place and a hold for ``n`` assets of ``kind`` at ``steps`` each, or the refusal."""
        amount = self.prices.max_cost(kind, steps, n)
        # the budget first, as for text: a tenant over its cap hears so, not that the hub is busy
        hold = None if self._budgets is None else await self._budgets.reserve_usd(tenant, amount)
        try:
            slot = self._admission.media()
        except BaseException:
            if hold is not None and self._budgets is not None:
                await self._budgets.settle(hold, 0.0)
            raise
        return Charge(amount, slot, hold, self._budgets)
