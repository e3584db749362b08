"""The edge's reliability scenarios (catalogue in ``shared.reliability``), by catalogue id.

Each entry is ``"module:function"``, imported only when it runs; ``python -m
edge_agent.reliability run ID`` runs one in a process of its own, the way the bench does.
"""

from __future__ import annotations

SCENARIOS: dict[str, str] = {
    "T1": "edge_agent.reliability.durability:t1_crash",
    "T3": "edge_agent.reliability.spool_faults:t3_disk_full",
    "T4": "edge_agent.reliability.durability:t4_journal",
    "T5": "edge_agent.reliability.spool_faults:t5_poison",
    "T6": "edge_agent.reliability.delivery:t6_hub_down",
    "T7": "edge_agent.reliability.delivery:t7_acks",
    "T8": "edge_agent.reliability.spool_faults:t8_capacity",
    "T10": "edge_agent.reliability.pirate:t10_pirate",
    "T11": "edge_agent.reliability.pirate:t11_heartbeat",
    "T13": "edge_agent.reliability.convergence:t13_convergence",
    "T18": "edge_agent.reliability.conformance:t18_schemathesis",
    "T19": "edge_agent.reliability.tenancy:t19_tenants",
    "T21": "edge_agent.reliability.tenancy:t21_crosstalk",
    "T25": "edge_agent.reliability.surface:t25_base_urls",
    "T26": "edge_agent.reliability.surface:t26_binds",
    "T27": "edge_agent.reliability.surface:t27_secrets",
    "T28": "edge_agent.reliability.limits:t28_limits",
    "T32": "edge_agent.reliability.failover:t32_failover",
    "T33": "edge_agent.reliability.budgets:t33_budgets",
    "T34": "edge_agent.reliability.failover:t34_cancel",
    "T35": "edge_agent.reliability.load:t35_load",
    "T37": "edge_agent.reliability.load:t37_overload",
}
