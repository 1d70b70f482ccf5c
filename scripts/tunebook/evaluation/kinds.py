"""Task kinds: how a task's replies are scored, from its kind and a few declarative keys.

No task carries Python of its own. ``meta.task.kind`` picks the scorer and the task file
(``recipes/task/<task>.yaml``) gives its keys:

- ``classification`` (``data.labels``): the reply is parsed to one label: the first allowed
  label it mentions, matched as a whole word, case- and whitespace-insensitively (a longer label
  wins over one it contains: "very high" before "high"). Metrics: ``acc``; ``valid`` (a label
  was produced); macro ``macro_precision``, ``macro_recall``, ``macro_f1`` over the label set
  (an unparseable reply counts as wrong: it lowers the gold class's recall and adds to no
  class's precision). The report adds the per-label confusion matrix.
- ``extraction`` (``data.answer_schema``, a JSON Schema file): the reply's first JSON object (a
  bare object or one in a code fence). Metrics: ``json_valid``; ``schema_valid``; field-level
  ``field_precision``, ``field_recall``, ``field_f1`` over the schema's top-level properties
  (a field counts when its normalised value equals the reference's; null and missing state
  nothing; an empty side scores 1.0 only when the other side is empty too); ``exact_match``
  (every field equal).
- ``generation``: free text against the reference reply. Metrics: ``rougeL`` (rouge_score
  ROUGE-L F1, stemmed), ``chrf`` (sacrebleu chrF, 0-1), ``bleu`` (sacrebleu corpus BLEU), and
  one 0/1 metric per declarative check in ``eval.checks``::

      eval:
        checks:
          signoff: {must_match: 'The Voltline Team[.!]*\\s*\\Z'}
          no_promises: {must_not_include: [lifetime warranty, no questions asked]}
          short: {max_words: 120}

  Check keys: ``must_include`` / ``must_not_include`` (substrings, case-insensitive unless
  ``case_sensitive: true``), ``must_match`` / ``must_not_match`` (Python regular expressions,
  searched), ``max_chars``, ``max_words``; a check passes when all its conditions hold.
- ``preference`` (DPO pairs): scored as ``generation`` against the preferred (chosen) reply.

Suites of a task include the kind's template (``eval-suites/_kinds/<kind>.yaml``: prompts,
decoding, the metric list); ``tunebook.evaluation.harness`` attaches the task's scorer
(``Scorer.process_results`` and ``Scorer.metric_list``) when it evaluates the suite, so the
declarative keys live in one place, the task file. Every function is pure and unit-tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError

KINDS = ("classification", "extraction", "generation", "preference")
INVALID = "[invalid]"
# The metric of each kind's suite that says "the reply has the required form" (None: free text).
VALIDITY_METRIC = {"classification": "valid", "extraction": "schema_valid",
                   "generation": None, "preference": None}
PRIMARY_METRIC = {"classification": "acc", "extraction": "field_f1", "generation": "rougeL",
                  "preference": "rougeL"}
CHECK_KEYS = ("must_include", "must_not_include", "must_match", "must_not_match", "max_chars",
              "max_words", "case_sensitive")


# ---------------------------------------------------------------------------------- documents

def _messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat row's messages, or a preference row's prompt followed by its chosen reply."""
    if isinstance(doc.get("messages"), list):
        return doc["messages"]
    prompt = doc.get("prompt")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    chosen = doc.get("chosen")
    if isinstance(chosen, str):
        chosen = {"role": "assistant", "content": chosen}
    return [*(prompt or []), *([chosen] if isinstance(chosen, dict) else [])]


def doc_to_text(doc: dict[str, Any]) -> str:
    """The user text a row asks, with earlier turns as a transcript prefix.

    lm-eval sends one user message per item (its chat template wraps it with the system
    instruction), so a multi-turn thread is flattened; base and tuned see the same text.
    """
    turns = [m for m in _messages(doc) if m["role"] != "system"]
    if turns and turns[-1]["role"] == "assistant":
        turns = turns[:-1]
    if not turns:
        return ""
    *earlier, last = turns
    if not earlier:
        return last["content"]
    names = {"user": "Customer", "assistant": "Agent"}
    transcript = "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in earlier)
    return f"Conversation so far:\n{transcript}\n\nNew message:\n{last['content']}"


def doc_to_target(doc: dict[str, Any]) -> str:
    """The reference reply: a chat row's final assistant message, a pair's chosen reply."""
    for m in reversed(_messages(doc)):
        if m["role"] == "assistant":
            return m["content"]
    return ""


# ---------------------------------------------------------------------------------- labels

def normalise_label(text: str) -> str:
    return " ".join((text or "").lower().split())


@lru_cache(maxsize=32)
def _label_pattern(labels: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted({normalise_label(x) for x in labels}, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in x.split()) for x in ordered)
    return re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.I)


def parse_label(text: str, labels: Sequence[str]) -> str:
    """The first allowed label the reply mentions (as written in ``labels``), else INVALID."""
    m = _label_pattern(tuple(labels)).search(text or "")
    if not m:
        return INVALID
    found = normalise_label(m.group(1))
    return next(x for x in labels if normalise_label(x) == found)


def macro_prf(pairs: Iterable[Sequence[Any]],
              labels: Sequence[str] | None = None) -> tuple[float, float, float]:
    """Macro precision, recall and F1 over ``labels`` from (gold, predicted[, labels]) items.

    A prediction outside ``labels`` (unparseable) counts as wrong: it lowers the gold class's
    recall and adds to no class's precision. Classes never predicted have precision 0.
    """
    from sklearn.metrics import precision_recall_fscore_support

    pairs = list(pairs)
    if not pairs:
        return 0.0, 0.0, 0.0
    if labels is None:
        labels = pairs[0][2]
    gold = [p[0] for p in pairs]
    pred = [p[1] for p in pairs]
    p, r, f, _ = precision_recall_fscore_support(gold, pred, labels=list(labels), average="macro",
                                                 zero_division=0)
    return float(p), float(r), float(f)


def macro_precision(items: list) -> float:
    return macro_prf(items)[0]


def macro_recall(items: list) -> float:
    return macro_prf(items)[1]


def macro_f1(items: list) -> float:
    return macro_prf(items)[2]


def confusion(pairs: Iterable[tuple[str, str]], labels: Sequence[str]) -> list[list[int]]:
    """Counts ``[gold][predicted]`` over ``labels`` plus a last column for INVALID."""
    index = {x: i for i, x in enumerate(labels)}
    out = [[0] * (len(labels) + 1) for _ in labels]
    for gold, pred in pairs:
        if gold in index:
            out[index[gold]][index.get(pred, len(labels))] += 1
    return out


# ---------------------------------------------------------------------------------- extraction

def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (a bare object or one inside a ``` fence), or None."""
    text = (text or "").strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        text = fence.group(1).strip()
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _end = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


@lru_cache(maxsize=8)
def _validator(schema_path: str) -> Any:
    import jsonschema

    schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    return jsonschema.validators.validator_for(schema)(schema)


def schema_ok(obj: Any, schema_path: str | Path) -> float:
    """1 when ``obj`` validates against the JSON Schema at ``schema_path``, else 0."""
    if obj is None:
        return 0.0
    return 1.0 if _validator(str(schema_path)).is_valid(obj) else 0.0


def schema_fields(schema_path: str | Path) -> tuple[str, ...]:
    """The top-level properties of a JSON Schema: the fields extraction is scored on."""
    try:
        schema = json.loads(Path(schema_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"data.answer_schema: cannot read {paths.rel(schema_path)} ({e}); point "
                        "it to the task's JSON Schema file") from None
    return tuple((schema.get("properties") or {}).keys())


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        v = " ".join(value.lower().split()).strip(" .")
        return v[4:] if v.startswith("the ") else v
    if isinstance(value, dict):
        return tuple(sorted((k, _norm(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def field_facts(obj: Any, keys: Sequence[str]) -> set[tuple[str, Any]]:
    """The (key, normalised value) facts an answer states; null and missing state nothing."""
    if not isinstance(obj, dict):
        return set()
    return {(k, _norm(obj[k])) for k in keys if k in obj and obj[k] is not None}


def field_scores(pred: Any, gold: Any, keys: Sequence[str]) -> dict[str, float]:
    """Field-level precision, recall, F1 = 2|P∩G| / (|P|+|G|), and exact match."""
    p, g = field_facts(pred, keys), field_facts(gold, keys)
    hit = len(p & g)
    both_empty = not p and not g
    return {
        "field_precision": hit / len(p) if p else float(both_empty),
        "field_recall": hit / len(g) if g else float(both_empty),
        "field_f1": 1.0 if both_empty else 2 * hit / (len(p) + len(g)),
        "exact_match": float(pred is not None and p == g),
    }


def field_f1(pred: Any, gold: Any, keys: Sequence[str]) -> float:
    return field_scores(pred, gold, keys)["field_f1"]


# ---------------------------------------------------------------------------------- generation

_ROUGE = None


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge_score, stemmed)."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(_ROUGE.score(reference or "", prediction or "")["rougeL"].fmeasure)


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (sacrebleu, character 6-grams, beta 2), scaled to 0-1."""
    from sacrebleu.metrics import CHRF

    return float(CHRF().sentence_score(prediction or "", [reference or ""]).score) / 100


def _tuple(value: Any) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


@dataclass(frozen=True)
class Check:
    """One declarative rubric check of a generation task: a 0/1 metric named ``name``."""

    name: str
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()
    must_match: tuple[str, ...] = ()
    must_not_match: tuple[str, ...] = ()
    max_chars: int | None = None
    max_words: int | None = None
    case_sensitive: bool = False

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> Check:
        """From a task file's ``eval.checks.<name>`` mapping (validated by the schema)."""
        return cls(name=name, must_include=_tuple(spec.get("must_include")),
                   must_not_include=_tuple(spec.get("must_not_include")),
                   must_match=_tuple(spec.get("must_match")),
                   must_not_match=_tuple(spec.get("must_not_match")),
                   max_chars=spec.get("max_chars"), max_words=spec.get("max_words"),
                   case_sensitive=bool(spec.get("case_sensitive", False)))

    def passes(self, text: str) -> float:
        text = text or ""
        folded = text if self.case_sensitive else text.lower()

        def fold(s: str) -> str:
            return s if self.case_sensitive else s.lower()

        ok = (all(fold(s) in folded for s in self.must_include)
              and not any(fold(s) in folded for s in self.must_not_include)
              and all(re.search(p, text) for p in self.must_match)
              and not any(re.search(p, text) for p in self.must_not_match)
              and (self.max_chars is None or len(text) <= self.max_chars)
              and (self.max_words is None or len(text.split()) <= self.max_words))
        return 1.0 if ok else 0.0


# ---------------------------------------------------------------------------------- the scorer

def _mean(name: str) -> dict[str, Any]:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


@dataclass(frozen=True)
class Scorer:
    """The scorer of one task: its kind and declarative keys."""

    kind: str
    labels: tuple[str, ...] = ()
    schema_path: str | None = None
    fields: tuple[str, ...] = ()
    checks: tuple[Check, ...] = field(default=())

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Scorer:
        """The scorer a composed recipe's task declares (``meta.task.kind``, ``data.labels``,
        ``data.answer_schema``, ``eval.checks``)."""
        kind = config["meta"]["task"]["kind"]
        data, ev = config.get("data") or {}, config.get("eval") or {}
        schema = data.get("answer_schema")
        schema_path = str(paths.ROOT / schema) if schema else None
        return cls(kind=kind, labels=tuple(data.get("labels") or ()),
                   schema_path=schema_path,
                   fields=schema_fields(schema_path) if schema_path else (),
                   checks=tuple(Check.from_spec(n, s or {})
                                for n, s in (ev.get("checks") or {}).items()))

    @property
    def validity_metric(self) -> str | None:
        return VALIDITY_METRIC[self.kind]

    def metric_list(self) -> list[dict[str, Any]]:
        """lm-eval's ``metric_list`` for this scorer."""
        if self.kind == "classification":
            return [_mean("acc"), _mean("valid"),
                    *({"metric": name, "aggregation": fn, "higher_is_better": True}
                      for name, fn in (("macro_precision", macro_precision),
                                       ("macro_recall", macro_recall),
                                       ("macro_f1", macro_f1)))]
        if self.kind == "extraction":
            return [_mean(m) for m in ("json_valid", "schema_valid", "field_precision",
                                       "field_recall", "field_f1", "exact_match")]
        return [_mean("rougeL"), _mean("chrf"),
                {"metric": "bleu", "aggregation": "bleu", "higher_is_better": True},
                *(_mean(c.name) for c in self.checks)]

    def score(self, doc: dict[str, Any], reply: str) -> dict[str, Any]:
        """Per-item metrics of ``reply`` to ``doc`` (lm-eval's ``process_results`` values)."""
        reference = doc_to_target(doc)
        if self.kind == "classification":
            gold_norm = normalise_label(reference)
            gold = next((x for x in self.labels if normalise_label(x) == gold_norm), reference)
            pred = parse_label(reply, self.labels)
            item = (gold, pred, self.labels)
            return {"acc": float(pred != INVALID and normalise_label(pred) == gold_norm),
                    "valid": float(pred != INVALID), "macro_precision": item,
                    "macro_recall": item, "macro_f1": item}
        if self.kind == "extraction":
            pred_obj = extract_json(reply)
            gold_obj = extract_json(reference)
            return {"json_valid": float(pred_obj is not None),
                    "schema_valid": schema_ok(pred_obj, self.schema_path)
                    if self.schema_path else float(pred_obj is not None),
                    **field_scores(pred_obj, gold_obj, self.fields)}
        reply = (reply or "").strip()
        return {"rougeL": rouge_l(reply, reference), "chrf": chrf(reply, reference),
                "bleu": (reference, reply), **{c.name: c.passes(reply) for c in self.checks}}

    def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
        return self.score(doc, results[0])

    def signature(self) -> dict[str, Any]:
        """What the scores depend on, for the evaluation's code hash."""
        schema = Path(self.schema_path).read_text(encoding="utf-8") if self.schema_path else None
        return {"kind": self.kind, "labels": list(self.labels), "schema": schema,
                "checks": [vars(c) for c in self.checks]}


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, Any]:
    """The kind templates' placeholder: tunebook attaches the task's ``Scorer`` in its place."""
    raise RuntimeError("this suite is scored by the task's kind and its keys in "
                       "recipes/task/<task>.yaml; evaluate it with `make baseline` / `make eval`")
