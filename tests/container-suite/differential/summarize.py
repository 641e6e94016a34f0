"""Summarizes what a reconciler left in ROOT (HOME under ROOT/opt/data, slots under ROOT/run/service):
one JSON object per profile on stdout, keyed by profile name.

    python3 summarize.py ROOT
"""
import json
import os
import re
import sys

root = sys.argv[1]
home = os.path.join(root, "opt/data")
scandir = os.path.join(root, "run/service")
out = {}


def entry(name):
    return out.setdefault(name, {})


if os.path.isdir(scandir):
    for slot in sorted(os.listdir(scandir)):
        if not slot.startswith("gateway-"):
            continue
        name = slot[len("gateway-"):]
        d = os.path.join(scandir, slot)
        e = entry(name)
        e["slot"] = True
        e["down"] = os.path.exists(os.path.join(d, "down"))
        run = open(os.path.join(d, "run")).read()
        m = re.findall(r"(hermes(?: -p \S+)? gateway run --replace)", run)
        e["command"] = m[-1] if m else None
        e["has_log"] = os.path.exists(os.path.join(d, "log", "run"))

log = os.path.join(home, "logs", "container-boot.log")
if os.path.exists(log):
    for line in open(log):
        m = re.search(r"profile=(\S+) prior_state=(\S+) action=(\S+)", line)
        if m:
            e = entry(m.group(1))
            e["prior_state"] = m.group(2)
            e["action"] = m.group(3)

for name in ["default"] + sorted(os.listdir(os.path.join(home, "profiles"))):
    d = home if name == "default" else os.path.join(home, "profiles", name)
    if not os.path.isdir(d):
        continue
    e = entry(name)
    e["stale_left"] = sorted(f for f in ("gateway.pid", "processes.json") if os.path.exists(os.path.join(d, f)))

for name in sorted(out):
    print(json.dumps({"profile": name, **out[name]}, sort_keys=True))
