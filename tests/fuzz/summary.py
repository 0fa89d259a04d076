"""Counts the requests of schemathesis VCR cassettes per operation of an OpenAPI document:
`summary.py openapi.json cassette.yaml...` (paths below /v1) prints how many cases each operation
got, which got fewer than 20 (those that take no input at all get a few: there is nothing to vary),
the statuses the server answered, and which operations answered a 5xx."""

from __future__ import annotations

import collections
import json
import re
import statistics
import sys
from urllib.parse import urlsplit


def operations(doc: dict) -> list:
    """(method, compiled path regex, operation id), literal paths before templated ones."""
    out = []
    for path, item in doc["paths"].items():
        parts = re.split(r"(\{[^}]+\})", path)
        pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op:
                out.append((method.upper(), re.compile(pattern + "$"), op["operationId"], path.count("{")))
    out.sort(key=lambda o: o[3])
    return out


def main() -> int:
    doc_path, cassettes, base = sys.argv[1], sys.argv[2:], "/v1"
    ops = operations(json.load(open(doc_path)))
    counts = collections.Counter({op_id: 0 for _, _, op_id, _ in ops})
    statuses = collections.Counter()
    server_errors = collections.Counter()
    uri = method = match = None
    in_response = False
    lines = (line for cassette in cassettes for line in open(cassette, encoding="utf-8"))
    for line in lines:
        s = line.strip()
        if s.startswith("uri: '"):
            uri, in_response = s[6:-1], False
        elif s.startswith("method: '") and uri is not None:
            method = s[9:-1]
            path = urlsplit(uri).path.removeprefix(base)
            match = next((o for m, rx, o, _ in ops if m == method and rx.match(path)), None)
            counts[match or f"(other) {method}"] += 1
        elif s == "response:":
            in_response = True
        elif in_response and s.startswith("code: '"):
            statuses[s[7:-1]] += 1
            if s[7:-1].startswith("5"):
                server_errors[match or f"(other) {method}"] += 1
            in_response = False
    tested = {k: v for k, v in counts.items() if not k.startswith("(other)")}
    values = sorted(tested.values())
    print(f"operations: {len(tested)}, requests: {sum(counts.values())}, per operation: "
          f"min {values[0]}, median {statistics.median(values)}, max {values[-1]}")
    few = sorted((v, k) for k, v in tested.items() if v < 20)
    if few:
        print("under 20 cases: " + ", ".join(f"{k} {v}" for v, k in few))
    other = {k: v for k, v in counts.items() if k.startswith("(other)")}
    if other:
        print("methods the document does not list: " + ", ".join(f"{k[8:]} {v}" for k, v in sorted(other.items())))
    print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    if server_errors:
        print("5xx answers: " + ", ".join(f"{k} {v}" for k, v in sorted(server_errors.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
