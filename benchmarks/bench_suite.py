"""How long README's test commands take here: the fast tier, then the whole suite.

    python benchmarks/bench_suite.py [--quick] [--out benchmarks/results/test_suite.json]

Runs `python -m pytest -m "not slow" tests` and `python -m pytest tests` (README's
command, the one CI runs) one after the other, each a fresh process, and keeps what
pytest reports of each (passed, failed, skipped, seconds), the tests that failed and the slowest.
--quick: one small test file for each, to check the harness.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from common import parse, provenance

ROOT = Path(__file__).resolve().parent.parent
TIERS = {"fast": ["-m", "not slow", "tests"], "full": ["tests"]}
QUICK_FILE = "tests/unit/test_plan.py"
QUICK_TIERS = {"fast": ["-m", "not slow", QUICK_FILE], "full": [QUICK_FILE]}
OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?)")
SLOWEST = re.compile(r"^\s*([\d.]+)s (call|setup|teardown)\s+(\S+)", re.MULTILINE)
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def run_tier(args: list[str]) -> dict:
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
               "--durations=10", *args]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in OUTCOME.findall(summary)}  # fmt: skip
    return {
        "command": "python -m pytest " + " ".join(f"'{a}'" if " " in a else a for a in args),
        "exit_code": done.returncode,
        "seconds": seconds,
        "counts": counts,
        "pytest_summary": summary,
        "failed": FAILED.findall(done.stdout),
        "slowest": [
            {"seconds": float(s), "phase": phase, "test": test}
            for s, phase, test in SLOWEST.findall(done.stdout)
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/test_suite.json")
    args = parse(parser, argv)
    result = {**provenance(args.allow_dirty), "tiers": {}}
    for name, tier_args in (QUICK_TIERS if args.quick else TIERS).items():
        result["tiers"][name] = run_tier(tier_args)
        print(name, json.dumps({k: v for k, v in result["tiers"][name].items()
                                if k != "slowest"}), flush=True)  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
