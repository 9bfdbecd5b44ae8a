#!/usr/bin/env python3
"""Writes a campaign's table (report.py's output) into RESULTS.md between
its `<!-- figures -->` and `<!-- /figures -->` markers, with the date and
the command that produced it."""

import datetime
import sys


def main(results, table_path, command):
    text = open(results, encoding="utf-8").read()
    start, end = "<!-- figures -->", "<!-- /figures -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    table = open(table_path, encoding="utf-8").read().strip()
    day = datetime.date.today().isoformat()
    block = f"{start}\nRun of {day}: `{command}`\n\n{table}\n{end}"
    open(results, "w", encoding="utf-8").write(head + block + tail)


if __name__ == "__main__":
    main(*sys.argv[1:4])
