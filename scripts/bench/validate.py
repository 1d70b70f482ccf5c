"""Benchmark: wall time to validate every recipe in one process, imports included.

Target: < 15 s on 2 cores. Peer: the same checks' unavoidable floor, a bare
`import axolotl.utils.config` (Axolotl's own validator cannot run without it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
TARGET_S = 15.0


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    tunebook = str(Path(PY).parent / "tunebook")
    runs = [wall([tunebook, "validate", "--all"]) for _ in range(3)]
    peer = [wall([PY, "-c", "import axolotl.utils.config"]) for _ in range(3)]
    from tunebook.compose import recipe_names

    best, floor = min(runs), min(peer)
    print(f"validate all {len(recipe_names())} recipes (one process, imports included): "
          f"{best:.2f} s (best of 3; runs {', '.join(f'{r:.2f}' for r in runs)})")
    print(f"peer: bare `import axolotl.utils.config`: {floor:.2f} s")
    print(f"ratio validate-all / axolotl import: {best / floor:.2f}x; "
          f"target < {TARGET_S:.0f} s: {'met' if best < TARGET_S else 'MISSED'}")
    return 0 if best < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
