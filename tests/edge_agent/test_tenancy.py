"""API keys to tenants, and the request ids the agent echoes."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from edge_agent.tenancy import DEFAULT_TENANT, AuthError, Tenancy, request_id_from
from shared.config import TenantConfig


def test_tenancy_maps_keys_to_tenants() -> None:
    acme = TenantConfig(name="acme", api_key=SecretStr("sk-a"), quality_target=0.9)
    tenancy = Tenancy([acme, TenantConfig(name="beta", api_key=SecretStr("sk-b"))])
    ctx = tenancy.context("r1", "Bearer sk-a")
    assert ctx.tenant == "acme" and ctx.quality_target == 0.9
    assert ctx.tenant_hash and "acme" not in ctx.tenant_hash
    assert tenancy.context("r2", "bearer  sk-b").tenant == "beta"
    for bad in (None, "", "Basic sk-a", "Bearer", "Bearer sk-c"):
        with pytest.raises(AuthError):
            tenancy.context("r3", bad)


def test_without_tenants_everyone_is_the_default_tenant() -> None:
    assert Tenancy([]).context("r", "Bearer anything").tenant == DEFAULT_TENANT


def test_request_ids_are_echoed_only_when_sane() -> None:
    assert request_id_from("abc-123:x") == "abc-123:x"
    for bad in (None, "", "has space", "x" * 200, "new\nline"):
        assert request_id_from(bad).startswith("req-")
