"""Answer schema: with ``data.answer_schema`` (extraction), every answer is JSON that follows it."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.data import formats
from tunebook.data.check import reader
from tunebook.data.check.base import MALFORMED, Check
from tunebook.errors import UserError


@cache
def validator(path: Path) -> Any:
    from jsonschema import Draft202012Validator

    try:
        return Draft202012Validator(json.loads(path.read_text("utf-8")))
    except (OSError, ValueError) as e:
        raise UserError(f"{paths.rel(path)}: cannot load data.answer_schema ({e})") from None


class AnswerSchema(Check):
    name = "answer_schema"
    codes = ("bad-answer",)
    severity = MALFORMED
    reports = "answers that are not JSON following data.answer_schema"
    drops = True
    counted = False

    def prepare(self, ctx: Any) -> None:
        if ctx.answer_schema is not None:
            validator(ctx.answer_schema)

    def validate(self, row: Any, ctx: Any) -> list[tuple[str, str]]:
        if ctx.answer_schema is None:
            return []
        ans = formats.answer(row) or ""
        try:
            value = reader.parse(ans)
        except (ValueError, RecursionError):
            return [("bad-answer",
                     "the answer is not JSON; data.answer_schema expects one object")]
        from jsonschema.exceptions import best_match

        err = best_match(validator(ctx.answer_schema).iter_errors(value))
        if err is None:
            return []
        where = "/".join(str(p) for p in err.absolute_path) or "answer"
        return [("bad-answer", f"{where}: {err.message[:150]} (data.answer_schema)")]
