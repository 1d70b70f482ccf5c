"""A run directory, ``runs/<recipe>/<run-id>/``: what one training run owns.

``axolotl.yaml`` (what Axolotl reads), ``resolved.yaml`` (the effective recipe),
``manifest.json`` (provenance, status and results, updated atomically), ``output/`` (Axolotl's
checkpoints and the final adapter) and, later, ``eval/``, ``gate.json``, the report and the
review. ``tunebook.training.render`` writes a new one; every later step opens it as a ``RunDir``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunebook import paths
from tunebook.errors import UserError
from tunebook.redaction import redact


@dataclass
class RunDir:
    path: Path
    recipe: str
    run_id: str

    @property
    def axolotl_yaml(self) -> Path:
        return self.path / "axolotl.yaml"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def output_dir(self) -> Path:
        return self.path / "output"

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into manifest.json atomically (write then rename)."""
        data = self.manifest()
        data.update(redact(fields))
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
                       encoding="utf-8")
        os.replace(tmp, self.manifest_path)
        return data

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = path.resolve()
        return cls(path=path, recipe=path.parent.name, run_id=path.name)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def resolve_run(recipe: str | None, run: str | None) -> RunDir:
    """``RUN=<dir>`` or ``RUN=last`` (the newest run of ``recipe``, or of any recipe)."""
    if run and run != "last":
        path = Path(run)
        if not path.is_absolute():
            path = (Path.cwd() / path) if (Path.cwd() / path).exists() else paths.ROOT / path
        if not (path / "manifest.json").is_file():
            raise UserError(f"RUN={run}: not a run directory (no manifest.json); expected "
                            "runs/<recipe>/<run-id> or RUN=last")
        return RunDir.open(path)
    base = paths.RUNS / recipe if recipe else paths.RUNS
    pattern = "*/manifest.json" if recipe else "*/*/manifest.json"
    candidates = sorted(base.glob(pattern), key=lambda p: p.parent.name) if base.is_dir() else []
    candidates = [c for c in candidates if c.parent.name != "baseline"
                  and not c.parent.name.endswith(("-smoke", "-bench"))]  # twins, benchmarks
    if not candidates:
        where = f"recipe {recipe}" if recipe else "any recipe"
        raise UserError(f"RUN=last: no runs of {where} under {paths.rel(base)}; "
                        f"run `make train{' RECIPE=' + recipe if recipe else ''}` first")
    return RunDir.open(candidates[-1].parent)
