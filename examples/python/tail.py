#!/usr/bin/env python3
"""Follow a tickstream node's SSE stream with Python's standard library only.

    python3 tail.py http://127.0.0.1:8080 AAPL,EURUSD [--raw] [--count N]

Prints one line per tick. Prices are parsed as Decimal (exact, never float).
On a dropped connection it reconnects with backoff and sends Last-Event-ID,
so the node resumes where it stopped (raw mode: gap-free replay).
"""
import json
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal


def sse_events(resp):
    """Yield (event, data, id) from an SSE response, per the HTML standard."""
    event, data, last_id = "", [], None
    for raw in resp:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data), last_id
            event, data = "", []
            continue
        if line.startswith(":"):
            continue  # heartbeat comment
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            last_id = value


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    base, symbols = args[0].rstrip("/"), args[1]
    raw = "--raw" in args
    count = int(args[args.index("--count") + 1]) if "--count" in args else None
    query = {"symbols": symbols}
    if raw:
        query["mode"] = "raw"
    url = base + "/stream?" + urllib.parse.urlencode(query)
    last_id, seen, backoff = None, {}, 0.1
    while True:
        req = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
        if last_id:
            req.add_header("Last-Event-ID", last_id)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                backoff = 0.1
                for event, data, ev_id in sse_events(resp):
                    last_id = ev_id or last_id
                    if event == "resync":
                        seen.clear()
                    elif event == "tick":
                        t = json.loads(data, parse_float=Decimal)
                        if t["seq"] <= seen.get(t["sym"], 0):
                            continue  # already held (snapshot after a reconnect)
                        seen[t["sym"]] = t["seq"]
                        bid, ask = Decimal(t["bid"]), Decimal(t["ask"])
                        print(f'{t["sym"]:<9} seq={t["seq"]:<8} bid={t["bid"]:<12} ask={t["ask"]:<12} spread={ask - bid}', flush=True)
                        if count is not None:
                            count -= 1
                            if count <= 0:
                                return
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:
                sys.exit(f"refused: {e.code} {e.read().decode()}")
            print(f"node busy ({e.code}); retrying", file=sys.stderr)
        except (urllib.error.URLError, OSError) as e:
            print(f"disconnected ({e}); reconnecting", file=sys.stderr)
        time.sleep(backoff * (0.5 + random.random() / 2))
        backoff = min(backoff * 2, 5)


if __name__ == "__main__":
    main()
