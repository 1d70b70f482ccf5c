"""Personal data: emails, phone numbers, payment cards and IBANs in any string of a row, the
system prompt included (``tunebook.data.pii``); reported masked, never copied."""

from __future__ import annotations

from typing import Any

from tunebook.data import formats, pii
from tunebook.data.check.base import GATED, Check


class PersonalData(Check):
    name = "pii"
    codes = ("pii",)
    severity = GATED
    threshold = "max_pii"
    reports = "rows with an email, phone number, payment card or IBAN"

    def observe(self, chunk: Any, ctx: Any) -> list[tuple[int, list[tuple[str, str]]]]:
        out = []
        for k, row in enumerate(chunk.rows):
            found = pii.scan(formats.all_text(row))
            if found:
                out.append((k, [(f.entity, f.masked) for f in found]))
        return out

    def finish(self, work: Any, partials: list, ctx: Any) -> None:
        lines = work.valid_lines()
        rep = work.report
        for base, part in partials:
            for k, found in part:
                line = int(lines[base + k])
                kinds = ", ".join(f"{entity} {masked}" for entity, masked in found[:3])
                rep.details[self.name].append({"line": line, "entities": [
                    {"entity": entity, "masked": masked} for entity, masked in found]})
                rep.add(line, "pii", f"personal data: {kinds}"
                        + (f" and {len(found) - 3} more" if len(found) > 3 else ""))
