"""Each measure's summary of one snapshot, stored on its refresh row so a report reads one row.

CONTRACT (owned by the reports helper; the runner calls it as its `summary` step).
"""
from __future__ import annotations


def summarize(session, refresh, params) -> dict:
    """measure name -> that measure's summary (JSON-ready) for the snapshot of `refresh`."""
    return {}  # placeholder until the reports helper lands
