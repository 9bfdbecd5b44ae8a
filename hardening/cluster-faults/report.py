#!/usr/bin/env python3
"""Turns the cluster-faults campaign's figures (JSON lines written by
core/tests/cluster_faults.rs through TIDEWIRE_FAULT_FIGURES) into the
Markdown table of RESULTS.md, on stdout."""

import json
import statistics
import sys


def spread(values):
    """'median / max' of the values in ms, '-' when none; 'never' counts."""
    got = [v for v in values if v is not None]
    never = len(values) - len(got)
    if not got:
        return "never" if never else "-"
    text = f"{statistics.median(got):.0f} / {max(got):.0f}"
    return text + (f" ({never} never)" if never else "")


def main(path):
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    print("| fault | rounds | sent | delivered | missing | counted (dropped + unconfirmed + missed + refused) | lost in a subscription gap (cut, stall) "
          "| duplicated | in order | slowest request during the fault, ms | delivery back, ms (median / max) "
          "| requests complete again, ms | presence converged, ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rounds = r["rounds_detail"]
        counted = r["dropped_outbound"] + r["unconfirmed_outbound"] + r["missed_outbound"] + r["publish_failed"]
        slowest = max((a["ms"] for rd in rounds for a in rd["asked"]), default=0)
        print(f"| {r['fault']} | {r['rounds']} | {r['sent']} | {r['delivered']} | {r['missing']} | {counted} | {r['lost_in_subscription_gaps']} "
              f"| {r['duplicated']} | {'yes' if r['in_order'] else 'NO'} | {slowest} "
              f"| {spread([rd['delivery_ms'] for rd in rounds])} "
              f"| {spread([rd['requests_ms'] for rd in rounds])} "
              f"| {spread([rd['presence_ms'] for rd in rounds])} |")


if __name__ == "__main__":
    main(sys.argv[1])
