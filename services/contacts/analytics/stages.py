"""Lifecycle stages after a refresh: the crm_lifecycle_stage hook's overrides, and crm.contact.stage_changed.

CONTRACT (owned by the stages helper; the runner calls it as its `stages` step).
"""
from __future__ import annotations


def apply_stages(uow, refresh, params, plugins) -> int:
    """Apply plugin overrides to the snapshot's stages, publish each change, update contact_stages; the count."""
    return 0  # placeholder until the stages helper lands
