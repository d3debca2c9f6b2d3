"""Whether a REST request may go ahead: the rate limiter's decision, and the faults the
control API asked a route to answer with (a forced status, or a forced 429)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.ratelimit import RateLimiter


@dataclass
class Refusal:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def admit(
    limiter: RateLimiter, route_key: str, major: str, *, exempt_global: bool
) -> tuple[Refusal | None, dict[str, str]]:
    """(a refusal to answer with, or None; the rate-limit headers for the answer)."""
    fault = limiter.forced_status(route_key)
    decision = limiter.check(route_key, major, exempt_global=exempt_global)
    if fault is not None and fault.status == 429:
        scope = "global" if fault.is_global else "user"
        decision.allowed = False
        decision.headers.update(
            {"Retry-After": str(max(1, round(fault.retry_after))), "X-RateLimit-Scope": scope}
        )
        if fault.is_global:
            decision.headers["X-RateLimit-Global"] = "true"
        decision.body = {
            "message": "You are being rate limited.",
            "retry_after": fault.retry_after,
            "global": fault.is_global,
            "code": 0,
        }
        limiter.stats["rate_limited"][f"forced_{scope}"] += 1
    if not decision.allowed:
        limiter.record_status(429)
        headers = {**decision.headers, "Via": "1.1 google"}
        return Refusal(429, decision.body or {}, headers), decision.headers
    if fault is not None:
        limiter.record_status(fault.status)
        body = {"message": f"{fault.status}: forced by the sandbox", "code": 0}
        return Refusal(fault.status, body, decision.headers), decision.headers
    return None, decision.headers
