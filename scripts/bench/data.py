"""Benchmark: the data checks at SFT scale (``make bench-data [ROWS=1000000]``).

Two targets:

1. **Scale** (issue: the data checks at real SFT scale). The full check -- format, schema,
   roles, exact and near duplicates, leaks across splits, personal data, rows too long (without
   a tokenizer) -- over a generated chat set of ``ROWS`` rows written as train/val/test
   (80/10/10), on 2 cores: <= 60 s and peak resident memory <= 2 GB at 1M rows, < 10 s at 100k.
   Every size of the ladder 100k, 300k, 1M up to ``ROWS`` runs in a fresh process; its peak RSS
   is the largest sum of the resident memory of that process and its workers, sampled every
   20 ms, so the rows show whether memory grows with the rows.
2. **Near-duplicate stage vs datasketch** (100k rows): the same char 5-gram shingles through a
   per-row ``datasketch.MinHash`` with one ``update()`` per shingle and ``MinHashLSH`` (the
   straightforward way), and through ``MinHash.bulk`` (datasketch's vectorised path), timed on
   the same sample of rows; ours must be >= 3x faster than the first. The full check with the
   recipe's tokenizer (token lengths too) on the 100k file is printed beside it.

The load average is printed: other jobs on the machine slow every figure down.

    .venv/bin/python scripts/bench/data.py [--rows 100000] [--sample 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LADDER = (100_000, 300_000, 1_000_000)
TARGETS = {100_000: (10.0, None), 1_000_000: (60.0, 2.0e9)}  # rows: (max wall s, max peak RSS)
TARGET_RATIO = 3.0
RECIPE = "mistral7b-qlora-support"  # sequence_len 1024; its twin tokenizer counts tokens
SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
_RESERVOIR = 50_000  # earlier rows a duplicate may copy (uniform over all earlier rows)


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Chat rows the size of the shipped support rows (system prompt, 8-25 word question,
    30-70 word reply) from a Zipf-ish vocabulary, with 1% exact and 1% near duplicates of
    earlier rows and a few PII strings planted; written as it goes."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 10)))
             for _ in range(20000)]
    cum = list(accumulate(1 / (i + 1) ** 0.8 for i in range(len(vocab))))
    system = (ROOT / "data-templates" / "prompts" / "support-system.txt").read_text("utf-8")
    earlier: list[str] = []  # a uniform reservoir sample of the rows written so far
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i in range(rows):
            r = rng.random()
            if i > 100 and r < 0.01:  # exact duplicate (case changed)
                row = json.loads(rng.choice(earlier))
                row["messages"][1]["content"] = row["messages"][1]["content"].upper()
                line = json.dumps(row)
            elif i > 100 and r < 0.02:  # near duplicate: one word added at the end
                row = json.loads(rng.choice(earlier))
                row["messages"][2]["content"] += " indeed"
                line = json.dumps(row)
            else:
                q = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 25))) + "?"
                a = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(30, 70))) + "."
                if rng.random() < 0.001:
                    q += f" mail me at user{i}@example.com"
                line = json.dumps({"messages": [{"role": "system", "content": system},
                                                {"role": "user", "content": q},
                                                {"role": "assistant", "content": a}]})
            f.write(line + "\n")
            if len(earlier) < _RESERVOIR:
                earlier.append(line)
            elif (k := rng.randrange(i + 1)) < _RESERVOIR:
                earlier[k] = line
    tmp.replace(path)


def dataset(rows: int) -> list[tuple[str, Path]]:
    """The generated ``rows``-row set as train/val/test files (made once, cached)."""
    folder = ROOT / ".cache" / "bench" / f"chat-{rows}"
    files = [(name, folder / f"{name}.jsonl") for name, _ in SPLITS]
    if all(p.is_file() for _, p in files):
        return files
    t0 = time.perf_counter()
    whole = folder / "all.jsonl"
    generate(whole, rows)
    with whole.open("rb") as src:
        start = 0
        for (name, share), (_, p) in zip(SPLITS, files, strict=True):
            n = round(rows * share) if name != "test" else rows - start
            with p.open("wb") as out:
                for _ in range(n):
                    out.write(src.readline())
            start += n
    whole.unlink()
    size = sum(p.stat().st_size for _, p in files)
    print(f"generated {folder.relative_to(ROOT)}/{{train,val,test}}.jsonl ({rows:,} rows, "
          f"{size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    return files


def _tree(proc, cpu: dict[int, float]) -> int:
    """Resident memory of ``proc`` and its descendants now; records each one's CPU seconds."""
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error), p.oneshot():
            total += p.memory_info().rss
            t = p.cpu_times()
            cpu[p.pid] = t.user + t.system
    return total


def measure(rows: int) -> dict:
    """Run the scale check on ``rows`` rows in a fresh process; wall, rows/s, peak RSS."""
    import psutil

    files = dataset(rows)
    cmd = [sys.executable, __file__, "--child", str(rows)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    watched, peak, done = psutil.Process(proc.pid), 0, threading.Event()
    cpu: dict[int, float] = {}

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, _tree(watched, cpu))
            except psutil.Error:
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"the check on {rows:,} rows failed (exit {proc.returncode})")
    result = json.loads(out.splitlines()[-1])
    result["peak_rss"] = peak
    result["cpu"] = sum(cpu.values())  # every process of the check, workers included
    result["files"] = [str(p.relative_to(ROOT)) for _, p in files]
    return result


def child(rows: int) -> None:
    """The measured process: the full check of the generated files, no tokenizer."""
    from tunebook.compose import compose_recipe
    from tunebook.data import checks

    config = compose_recipe(RECIPE).config
    files = dataset(rows)
    t0, c0 = time.perf_counter(), time.process_time()
    report = checks.check_files(files, config)
    wall = time.perf_counter() - t0
    print(json.dumps({
        "rows": report.rows(), "wall": wall, "cpu_main": time.process_time() - c0,
        "stages": [f.timings for f in report.files], "exit_code": report.exit_code,
        "counts": {k: report.count(k) for k in ("exact_duplicates", "near_duplicates", "leaks",
                                                 "pii", "too_long")}}))


def with_tokenizer(rows: int) -> None:
    """The full check of one file with the recipe's tokenizer: token lengths included."""
    from tunebook.compose import compose_recipe
    from tunebook.data import checks
    from tunebook.twins import tokenizer_for

    config = compose_recipe(RECIPE).config
    tokenizer = tokenizer_for(config, full=False)  # built/loaded before the clock starts
    train = dataset(rows)[0][1]
    t0 = time.perf_counter()
    report = checks.check_path(train, config, tokenizer=tokenizer)
    wall = time.perf_counter() - t0
    tokens = report.files[0].tokens or {}
    print(f"with the recipe tokenizer ({Path(report.tokenizer or '-').name}), "
          f"{report.rows():,} rows of {train.relative_to(ROOT)}: {wall:.1f} s -> exit "
          f"{report.exit_code}; tokenized {tokens.get('counted', 0):,} rows (those that could "
          f"exceed sequence_len {report.seq_len}, plus a percentile sample)", flush=True)


def near_duplicate_ratio(rows: int, sample_n: int) -> float:
    """Ours vs datasketch on the same sample of rows; prints both and returns the ratio."""
    from tunebook.data import formats, neardup

    train = dataset(rows)[0][1]
    with train.open("rb") as f:
        texts = [formats.row_text(json.loads(line)) for line in f]
    threshold = 0.8
    t0 = time.perf_counter()
    neardup.clusters(neardup.Index.build(texts), threshold)
    stage_full = time.perf_counter() - t0
    sample = texts[:sample_n]
    ours_s = min(_ours(sample, threshold) for _ in range(3))
    loop_s = _baseline_update_loop(sample, threshold)
    batch_s = _baseline_update_batch(sample, threshold)
    ratio = loop_s / ours_s
    print(f"near-duplicate stage, all {len(texts):,} rows of {train.name} in memory: ours "
          f"{stage_full:.1f} s (per-update() loop extrapolated: "
          f"{loop_s * len(texts) / len(sample):.0f} s)")
    print(f"near-duplicate stage, same {len(sample):,}-row sample: ours {ours_s:.2f} s, "
          f"per-row MinHash.update() loop {loop_s:.2f} s -> {ratio:.1f}x faster; "
          f"datasketch MinHash.bulk/update_batch {batch_s:.2f} s -> {batch_s / ours_s:.1f}x",
          flush=True)
    return ratio


def _ours(texts: list[str], threshold: float) -> float:
    from tunebook.data import neardup

    t0 = time.perf_counter()
    neardup.clusters(neardup.Index.build(texts), threshold)
    return time.perf_counter() - t0


def _baseline_update_loop(texts: list[str], threshold: float) -> float:
    """The straightforward way: a MinHash per row, one update() per shingle, then LSH."""
    from datasketch import MinHash, MinHashLSH

    from tunebook.data import neardup

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=neardup.NUM_PERM)
    sigs = []
    for i, t in enumerate(texts):
        norm = neardup.normalise(t).ljust(neardup.SHINGLE)
        m = MinHash(num_perm=neardup.NUM_PERM)
        for k in range(len(norm) - neardup.SHINGLE + 1):
            m.update(norm[k : k + neardup.SHINGLE].encode("utf-8"))
        sigs.append(m)
        lsh.insert(i, m)
    for m in sigs:
        lsh.query(m)
    return time.perf_counter() - t0


def _baseline_update_batch(texts: list[str], threshold: float) -> float:
    """datasketch's own vectorised path: MinHash.bulk (one update_batch per row), then LSH."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    from tunebook.data import neardup

    t0 = time.perf_counter()
    shingles = []
    for t in texts:
        norm = neardup.normalise(t).ljust(neardup.SHINGLE)
        shingles.append([norm[k : k + neardup.SHINGLE].encode("utf-8")
                         for k in range(len(norm) - neardup.SHINGLE + 1)])
    sigs = [LeanMinHash(m) for m in MinHash.bulk(shingles, num_perm=neardup.NUM_PERM)]
    lsh = MinHashLSH(threshold=threshold, num_perm=neardup.NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(sigs):
            session.insert(i, m)
    for m in sigs:
        lsh.query(m)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000,
                    help="the largest size measured (the ladder 100k, 300k, 1M up to it)")
    ap.add_argument("--sample", type=int, default=3000, help="rows of the datasketch race")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for k, v in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                 "HF_DATASETS_OFFLINE": "1"}.items():
        os.environ.setdefault(k, v)
    if args.child:
        child(args.child)
        return 0
    cores = len(os.sched_getaffinity(0))
    sizes = sorted({*(n for n in LADDER if n <= args.rows), args.rows})
    print(f"{cores} cores; load average {os.getloadavg()[0]:.1f} before the run (other jobs "
          "share these cores and slow every figure down)", flush=True)
    ok = True
    results = []
    for rows in sizes:
        r = measure(rows)
        results.append(r)
        print(f"  {r['rows']:>9,} rows: {r['wall']:6.1f} s, {r['rows'] / r['wall']:>8,.0f} "
              f"rows/s, peak RSS {r['peak_rss'] / 1e9:.2f} GB, CPU {r['cpu']:.0f} s (this "
              f"process {r['cpu_main']:.0f} s); exit {r['exit_code']} {r['counts']}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{'rows':>10} {'wall s':>8} {'rows/s':>9} {'peak RSS':>9}  target")
    for r in results:
        wall_max, rss_max = TARGETS.get(r["rows"], (None, None))
        verdicts = []
        if wall_max is not None:
            verdicts.append(f"<= {wall_max:.0f} s " + ("met" if r["wall"] <= wall_max
                                                       else "MISSED"))
            ok &= r["wall"] <= wall_max
        if rss_max is not None:
            verdicts.append(f"<= {rss_max / 1e9:.0f} GB " + ("met" if r["peak_rss"] <= rss_max
                                                            else "MISSED"))
            ok &= r["peak_rss"] <= rss_max
        print(f"{r['rows']:>10,} {r['wall']:>8.1f} {r['rows'] / r['wall']:>9,.0f} "
              f"{r['peak_rss'] / 1e9:>7.2f}GB  {'; '.join(verdicts) or '-'}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        rows_x, rss_x = b["rows"] / a["rows"], b["peak_rss"] / a["peak_rss"]
        print(f"rows x{rows_x:.0f} -> peak RSS x{rss_x:.1f} "
              f"({'sub-linear' if rss_x < rows_x else 'NOT sub-linear'})")
    print()
    with_tokenizer(LADDER[0])
    ratio = near_duplicate_ratio(LADDER[0], args.sample)
    print(f"near-dup >= {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}; "
          f"load average {os.getloadavg()[0]:.1f} after the run")
    ok &= ratio >= TARGET_RATIO
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
