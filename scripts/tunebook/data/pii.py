"""Find personal data in training rows: emails, phone numbers, payment card numbers, IBANs.

Decision (why not Presidio in the gate): presidio-analyzer's default engine needs a spaCy model
it cannot download offline; with a blank spaCy pipeline only its pattern recognizers work (no
names without NER), importing it pulls spaCy (and here torch) for several seconds, it costs
milliseconds per row, and its URL/email recognizers reach for the network through tldextract.
The gate must scan 100k rows in seconds, offline, so it
uses the same validation Presidio's recognizers use, directly:

- a cheap pre-filter: a row is scanned only when it has an ``@`` or a run of 8+ digits;
- emails: one regex;
- cards: 13-19 digits (spaces or dashes allowed) that pass the Luhn checksum;
- IBANs: country code + check digits + 11-30 alphanumerics that pass ISO 7064 mod 97;
- phones: ``phonenumbers.PhoneNumberMatcher`` at leniency VALID over Presidio's default
  regions (US, GB, DE, FR, IL, IN, CA, BR) -- exactly what Presidio's ``PhoneRecognizer`` does.

Names are not detected (that needs NER). Findings are reported with the value masked, so a
report never copies the personal data it found; the data is never scrubbed silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PHONE_REGIONS = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR")  # Presidio's defaults

_PREFILTER = re.compile(r"@|\d[\d\s().+/-]{6,}\d")
_DIGIT = re.compile(r"\d")
_DIGIT_RUN = re.compile(r"\d[\d\s().+/-]{6,}\d")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_PHONE_HINT = re.compile(r"\+?\(?\d[\d\s().-]{7,}\d")


@dataclass(frozen=True)
class Finding:
    entity: str  # EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE (Presidio's names)
    masked: str
    start: int
    end: int


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def mask(value: str) -> str:
    """Keep the first two and last two visible characters: enough to find it, not to use it."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def _worth_scanning(text: str) -> bool:
    """``_PREFILTER.search(text)``, several times faster: ``@`` is a substring test, and a
    digit run can only start at a digit, so it is tried only there (rows hold few digits)."""
    if "@" in text:
        return True
    match = _DIGIT_RUN.match
    return any(match(text, d.start()) for d in _DIGIT.finditer(text))


def scan(text: str) -> list[Finding]:
    """Every personal-data finding in ``text``, left to right, spans not overlapping."""
    if not _worth_scanning(text):
        return []
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(entity: str, start: int, end: int) -> None:
        if any(s < end and start < e for s, e in taken):
            return
        taken.append((start, end))
        found.append(Finding(entity, mask(text[start:end]), start, end))

    if "@" in text:
        for m in _EMAIL.finditer(text):
            add("EMAIL_ADDRESS", m.start(), m.end())
    for m in _IBAN.finditer(text):
        if iban_ok(m.group()):
            add("IBAN_CODE", m.start(), m.end())
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and luhn(digits):
            add("CREDIT_CARD", m.start(), m.end())
    if _PHONE_HINT.search(text):
        import phonenumbers

        for region in PHONE_REGIONS:
            for pm in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
                add("PHONE_NUMBER", pm.start, pm.end)
    found.sort(key=lambda f: f.start)
    return found
