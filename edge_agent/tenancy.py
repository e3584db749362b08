"""Who is asking: API key → tenant, and the per-request context every stage reads.

The tenant comes from the transport (the ``Authorization`` header), never from the JSON body.
Caches key on ``tenant``; telemetry and the hub only ever see ``tenant_hash``, so a tenant's name
does not leave the edge. Request ids are echoed from the client when they are safe to log.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.config import TenantConfig
from shared.telemetry import identity_hash

DEFAULT_TENANT = "default"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    tenant: str = DEFAULT_TENANT
    quality_target: float | None = None
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    # whether the client has closed its connection (the API sets it; in-process callers never do)
    client_gone: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)

    @property
    def tenant_hash(self) -> str:
        return identity_hash(self.tenant)

    def user_hash(self, user: str) -> str:
        """An end user's id (the body's ``user``) as telemetry sees it: hashed within this tenant,
        so the same id in two tenants is two people; "" for no id."""
        return identity_hash(user, salt=self.tenant)


class AuthError(Exception):
    """The caller presented no key, or one no tenant owns."""


def request_id_from(header: str | None) -> str:
    """Echo a client's id when it is safe to put in logs and headers; otherwise make one."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return f"req-{os.urandom(16).hex()}"  # uuid4's randomness without its object


class Tenancy:
    """Maps API keys to tenants. With no tenants configured, everyone is the default tenant."""

    def __init__(self, tenants: list[TenantConfig]) -> None:
        self._tenants = list(tenants)

    @property
    def enforced(self) -> bool:
        return bool(self._tenants)

    def resolve(self, authorization: str | None) -> TenantConfig | None:
        """The tenant behind an ``Authorization`` header; ``None`` when auth is off."""
        if not self._tenants:
            return None
        if not authorization:
            raise AuthError("missing API key: send it as 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("malformed Authorization header: expected 'Bearer <key>'")
        presented = token.strip().encode()
        found: TenantConfig | None = None
        for tenant in self._tenants:
            # compare against every key so timing does not reveal which prefix matched
            if hmac.compare_digest(presented, tenant.api_key.get_secret_value().encode()):
                found = tenant
        if found is None:
            raise AuthError("incorrect API key provided")
        return found

    def context(self, request_id: str, authorization: str | None) -> RequestContext:
        tenant = self.resolve(authorization)
        if tenant is None:
            return RequestContext(request_id=request_id)
        return RequestContext(request_id=request_id, tenant=tenant.name, quality_target=tenant.quality_target)
