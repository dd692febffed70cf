"""`ybgate status`: the running gateway's state, from its admin listener."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from gateway.cli.config_file import read_config


def cmd_status(path: Path, as_json: bool) -> int:
    import json

    from gateway.http1.unix_client import request

    config = read_config(path)
    if config is None:
        return 1
    if not config.admin.enabled:
        print("the admin listener is disabled in the configuration (admin.enabled: false)", file=sys.stderr)
        return 1
    host, port = config.admin.host, config.admin.port
    try:
        reply = asyncio.run(request("GET", "/status", host=host, port=port, time_limit=5))
    except (OSError, TimeoutError) as exc:
        print(f"ybgate is not answering on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    doc = json.loads(reply.body)
    if as_json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return 0
    recent = doc["recent"]
    print(
        f"ybgate {doc['version']}  up {doc['uptime_s']:.0f}s  in flight {doc['in_flight']}  "
        f"answered {recent['answered']}  refused {recent.get('refused', 0)}  failed {recent['failed']}"
    )
    if recent.get("by_kind"):
        print("  by kind: " + ", ".join(f"{kind} {n}" for kind, n in recent["by_kind"].items()))
    link = doc.get("link")
    print(f"link: {link['interface']} {'up' if link['up'] else 'DOWN'}" if link else "link: not watched")
    from gateway.cli.upstreams import upstream_lines

    for line in upstream_lines(doc["upstreams"]):
        print(line)
    for e in recent["errors"][:10]:
        what = "refused" if e.get("refused") else "failed"
        again = f" (x{e['repeats']})" if e.get("repeats", 1) > 1 else ""
        who = f" [{e['client']}]" if e.get("client") else ""
        print(f"{what}{who} {e['kind']}: {e['infno'] or '-'} {e['msgid'] or '-'}{again} {e['message']}")
    return 0
