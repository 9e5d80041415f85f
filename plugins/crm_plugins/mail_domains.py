"""Mail providers told apart by their e-mail domain: free mail (says nothing about an employer) and disposable.

One list for everyone who judges a domain: the built-in lead scorer (plugins) and the contacts service, which
joins a new contact to the account of its e-mail domain except for free mail. It lives in the plugin API
package because services already import it, while plugins must not import the services.
Domains are given lower-case and ASCII (the IDNA form), as `LeadInput.email_domain` and the contacts service
produce them.
"""
from __future__ import annotations

import re

# Providers recognised in any country variant: yahoo.co.uk, hotmail.de, gmx.at ...
FREE_MAIL_BRANDS = frozenset({
    "gmail", "googlemail", "yahoo", "ymail", "rocketmail", "hotmail", "outlook", "gmx", "aol", "icloud",
    "proton", "protonmail", "yandex",
})
# Providers whose name alone would be ambiguous (web.com is a company; web.de is free mail).
FREE_MAIL_DOMAINS = frozenset({
    "web.de", "live.com", "msn.com", "me.com", "mac.com", "mail.ru", "bk.ru", "inbox.ru", "list.ru",
    "mail.com", "email.com", "pm.me", "t-online.de", "freenet.de", "posteo.de", "mailbox.org", "zoho.com",
    "zohomail.com", "fastmail.com", "tutanota.com", "tuta.io", "qq.com", "163.com", "126.com", "naver.com",
    "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "libero.it", "orange.fr", "laposte.net", "free.fr",
    "btinternet.com", "comcast.net", "verizon.net", "att.net", "rediffmail.com",
})
DISPOSABLE_BRANDS = frozenset({
    "mailinator", "guerrillamail", "sharklasers", "yopmail", "10minutemail", "tempmail", "temp-mail",
    "throwawaymail", "trashmail", "getnada", "dispostable", "maildrop", "mailnesia", "fakeinbox", "mintemail",
    "spamgourmet", "emailondeck", "moakt", "burnermail", "tempail", "mohmal", "mytemp",
})
# A country suffix such as "de", "com", "co.uk", "com.br".
_PUBLIC_SUFFIX = re.compile(r"^(?:[a-z]{2,3}|co\.[a-z]{2}|com?\.[a-z]{2})$")


def _brand(domain: str, brands: frozenset[str]) -> str | None:
    """The provider brand when `domain` is `<brand>.<public suffix>` or a subdomain of it."""
    labels = domain.split(".")
    for i, label in enumerate(labels[:-1]):
        if label in brands and _PUBLIC_SUFFIX.match(".".join(labels[i + 1:])):
            return label
    return None


def _is_or_under(domain: str, known: frozenset[str]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in known)


def is_free_mail(domain: str) -> bool:
    """True when `domain` belongs to a free mail provider (gmail.com, yahoo.co.uk, web.de, ...)."""
    return bool(_brand(domain, FREE_MAIL_BRANDS)) or _is_or_under(domain, FREE_MAIL_DOMAINS)


def is_disposable_mail(domain: str) -> bool:
    """True when `domain` belongs to a disposable (throw-away) mail service."""
    return bool(_brand(domain, DISPOSABLE_BRANDS))
