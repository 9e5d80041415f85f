"""E-mail normalisation shared by every service that matches people by address."""
from __future__ import annotations


def normalize_email(address: str) -> str:
    """Trim and lower-case an address so that `Ann@Example.COM ` and `ann@example.com` match."""
    return address.strip().lower()


def email_domain(address: str) -> str:
    """The domain part of an address, normalised."""
    return normalize_email(address).rpartition("@")[2]
