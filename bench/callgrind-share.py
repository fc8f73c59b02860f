#!/usr/bin/env python3
"""The share of a callgrind profile spent inside a set of functions.

    callgrind-share.py CALLGRIND_OUT REGEX [OPS]

The set S is every function whose name matches REGEX (Python `re.search`).
Its cost is the inclusive cost of every call from a function outside S into
one inside it, so nested members (S calling S) are counted once, whatever
the compiler inlined and whichever source file callgrind attributes the
inlined lines to (callgrind_annotate splits one function by file). Prints
the total, S's cost, its share, per operation when OPS is given, and the
calls into each entry point of S (e.g. the number of commit batches).
"""

import re
import sys
from collections import defaultdict


def parse(path):
    names = {}
    self_cost = defaultdict(int)
    edges = defaultdict(int)
    calls = defaultdict(int)
    fn = None
    cfn = None
    pending_call = None

    def name_of(spec):
        m = re.match(r"\((\d+)\)(?: (.*))?$", spec)
        if not m:
            return spec
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), spec)

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call is not None:
                    edges[(fn, pending_call[0])] += cost
                    calls[(fn, pending_call[0])] += pending_call[1]
                    pending_call = None
                else:
                    self_cost[fn] += cost
                continue
            key, _, value = line.partition("=")
            if key == "fn":
                fn = name_of(value)
            elif key == "cfn":
                cfn = name_of(value)
            elif key == "calls":
                pending_call = (cfn, int(value.split()[0]))
    return self_cost, edges, calls


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, pattern = sys.argv[1], re.compile(sys.argv[2])
    ops = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    self_cost, edges, calls = parse(path)
    total = sum(self_cost.values())
    # Inside: S, and any function called only from inside (a generic
    # helper such as Vec::from_iter running a closure of S), to a fixpoint:
    # otherwise S -> helper -> S would count the inner member twice.
    callers = defaultdict(set)
    for caller, callee in edges:
        if caller != callee:
            callers[callee].add(caller)
    members = {f for f in set(self_cost) | set(callers) if f and pattern.search(f)}
    grew = True
    while grew:
        grew = False
        for f, cs in callers.items():
            if f not in members and cs and cs <= members:
                members.add(f)
                grew = True
    inside = lambda name: name in members
    by_entry = defaultdict(int)
    entry_calls = defaultdict(int)
    for (caller, callee), cost in edges.items():
        if inside(callee) and not inside(caller) and caller != callee:
            by_entry[callee] += cost
            entry_calls[callee] += calls[(caller, callee)]
    share = sum(by_entry.values())
    per = f", {total / ops:,.0f} per operation" if ops else ""
    print(f"total {total:,} instructions{per}")
    for name, cost in sorted(by_entry.items(), key=lambda kv: -kv[1]):
        per = f" = {cost / ops:,.0f} per operation" if ops else ""
        print(f"  {cost:>14,} {100 * cost / total:5.2f}%  {entry_calls[name]:>7} calls  {name}{per}")
    per = f" = {share / ops:,.0f} per operation" if ops else ""
    print(f"in the set: {share:,} = {100 * share / total:.2f}%{per}")


if __name__ == "__main__":
    main()
