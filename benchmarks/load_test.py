"""Concurrent-load test of the Digits page (issue 6): N browser sessions at once.

Starts ``streamlit run lrp_explorer/app.py`` on loopback (a free port), opens N sessions (Playwright
browser contexts in one headless Debian Chromium) on the Digits page and lets each of them,
for the given duration, repeat: type its own held-out digit index, change a rule (a step
of the "Global γ" slider under epsilon-gamma-box, or another Preset) and click "Run B-LRP".
It measures

- **requests served**: actions done (the app ran, is idle and the heatmap is drawn anew);
- **errors**: an ``stException`` or ``st.error`` message on the page, an action not done
  within 90 s, a missing heatmap, a crashed page, a session that cannot start (target 0);
- **latency**: from the input event in the page to the rendered new heatmap (the LRP map,
  or the B-LRP α panels), median and p95 (target p95 ≤ 3 s);
- **peak server memory**: RSS of the streamlit process and its children, sampled from
  ``/proc`` every 0.2 s (target ≤ 3 GB);
- **isolation**: after every action the page must show the session's own digit index,
  true label, prediction, preset, γ and B-LRP class (target: no violation).

By default each session acts again as soon as its last action is drawn (no think time: a
stress test); ``--think S`` makes each pause ~S s (uniform 0.5–1.5 × S) between actions,
the pace of people looking at the heatmap. The browsers run on the same machine as the
server, so on a small machine they take most of the cores (the table shows the CPU seconds
of both): the latencies are an upper bound for what 20 remote visitors see. The 20
sessions are opened before the clock starts (about 5–7 CPU s of browser work each, ~1.5 min
on 2 cores); ``--json`` also holds the RSS over time, each error and isolation violation,
and the figures per kind of action.

    python benchmarks/load_test.py                       # 20 sessions, 120 s
    python benchmarks/load_test.py --think 5                # a classroom's pace
    python benchmarks/load_test.py --sessions 5 --duration 30 --json load.json

Prints a table with PASS/FAIL per target; exits 1 when a target is missed, 2 without
Chromium. The CI version (20 s, no latency target) is ``tests/e2e/test_load.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from e2e.harness import chromium_path  # noqa: E402
from e2e.load import run_load_test  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the load test, print the table (and write ``--json``); returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20, help="browser sessions (default 20)")
    ap.add_argument("--duration", type=float, default=120.0,
                    help="seconds of load after all sessions are open (default 120)")
    ap.add_argument("--think", type=float, default=0.0, metavar="S",
                    help="mean pause in s between a session's actions (default 0: none)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    args = ap.parse_args(argv)

    exe = chromium_path()
    if exe is None:
        print("Debian's chromium is not installed: apt-get install chromium", file=sys.stderr)
        return 2
    result = run_load_test(args.sessions, args.duration, exe,
                           log=lambda s: print(s, flush=True), think_s=args.think)
    print()
    print(result.table())
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=2, allow_nan=False) + "\n")
        print(f"\nfigures written to {args.json}")
    print(f"\n{'PASS' if result.passed() else 'FAIL'}: " + ", ".join(
        f"{name} {'met' if ok else 'NOT met'}" for name, ok in result.checks().items()))
    return 0 if result.passed() else 1


if __name__ == "__main__":
    sys.exit(main())
