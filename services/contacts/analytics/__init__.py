"""Customer analytics: ABC, RFM, lifetime value, the profitability matrix, the pyramid and lifecycle stages,
computed in SQL into snapshots (docs/analytics.md)."""
