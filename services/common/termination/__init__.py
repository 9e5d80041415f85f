"""Termination policies: the kit shared by the contacts (customers) and partners (partners) services.

See docs/termination.md. Each service owns its subjects' evidence and builds their histories; this package
holds what is the same for both: policy records, simulations and evaluations run in the worker in batches,
recommendations, decisions and the HTTP routes, driven by a per-service `SubjectAdapter`.
"""
from __future__ import annotations

READ_SCOPE = "termination:read"
MANAGE_SCOPE = "termination:manage"
DECIDE_SCOPE = "termination:decide"
