"""Saved segments: rule sets over contacts, their measures and metrics, evaluated in SQL (docs/segments.md)."""
