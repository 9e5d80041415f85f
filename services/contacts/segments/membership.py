"""Segment membership at a refresh: who entered and who left each segment, with their events.

CONTRACT (owned by the segments helper; the analytics runner calls it as its `segments` step).
"""
from __future__ import annotations


def refresh_memberships(uow, refresh, now) -> dict:
    """Recompute every segment of refresh.currency; publish crm.segment.entered|left; segment name -> changes."""
    return {}  # placeholder until the segments helper lands
