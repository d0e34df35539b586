"""What the project's own benchmark scripts print (not a test): each repetition's
figures on stderr as they come, then one JSON line of medians on stdout, in the
shape of ../shared/bench/xmppbench.py's."""

from __future__ import annotations

import argparse
import json
import statistics
import sys


def print_rep(figures: dict) -> None:
    print(json.dumps(figures), file=sys.stderr)


def print_summary(args: argparse.Namespace, results: list[dict]) -> None:
    summary = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(json.dumps({"target": args.target, "params": vars(args), "median": summary,
                      "reps": results}))
