"""Writes a generated data volume for the reconciler differential: HOME/profiles/<name>/ with every
kind of gateway state file the two reconcilers must agree on, plus stale runtime files.

    python3 generate.py HOME [--invalid-names] [--no-non-objects] [--no-default-state]
"""
import itertools
import json
import os
import sys

home = sys.argv[1]
invalid = "--invalid-names" in sys.argv
non_objects = "--no-non-objects" not in sys.argv
default_state = "--no-default-state" not in sys.argv
profiles = os.path.join(home, "profiles")
os.makedirs(profiles, exist_ok=True)

STATES = [None, "running", "stopped", "draining", "degraded", "starting", "startup_failed"]
DESIRED = [None, "running", "stopped"]


def profile(name, state_bytes=None, soul=True, stale=False):
    d = os.path.join(profiles, name)
    os.makedirs(d, exist_ok=True)
    if soul:
        with open(os.path.join(d, "SOUL.md"), "w") as f:
            f.write(f"# {name}\n")
    if state_bytes is not None:
        with open(os.path.join(d, "gateway_state.json"), "wb") as f:
            f.write(state_bytes)
    if stale:
        for stale_name in ("gateway.pid", "processes.json"):
            with open(os.path.join(d, stale_name), "w") as f:
                f.write('{"pid": 4242}\n')


n = 0
for desired, gateway in itertools.product(DESIRED, STATES):
    data = {}
    if desired is not None:
        data["desired_state"] = desired
    if gateway is not None:
        data["gateway_state"] = gateway
    n += 1
    profile(f"s{n:02d}-{desired or 'none'}-{(gateway or 'none').replace('_', '-')}",
            json.dumps(data).encode() if data else None, stale=(n % 3 == 0))

profile("no-file")
profile("corrupt", b'{"gateway_state": "runn')
profile("empty-file", b"")
if non_objects:
    profile("array", b'["running"]')
    profile("string", b'"running"')
    profile("nested-desired", b'{"desired_state": {"x": 1}, "gateway_state": "running"}')
profile("null-state", b'{"gateway_state": null}')
profile("number-state", b'{"gateway_state": 7}')
profile("bom-running", b'\xef\xbb\xbf{"gateway_state": "running"}')
profile("no-soul", json.dumps({"gateway_state": "running"}).encode(), soul=False)
profile("stale-only", json.dumps({"gateway_state": "stopped"}).encode(), stale=True)
os.makedirs(os.path.join(profiles, "plain-dir-no-soul"), exist_ok=True)
with open(os.path.join(profiles, "a-file"), "w") as f:
    f.write("not a profile\n")

# The default profile lives at HOME itself.
if default_state:
    with open(os.path.join(home, "gateway_state.json"), "w") as f:
        json.dump({"gateway_state": "running"}, f)
with open(os.path.join(home, "gateway.pid"), "w") as f:
    f.write("4242\n")

if invalid:
    profile("Bad-Upper", json.dumps({"gateway_state": "running"}).encode())
    profile("default", json.dumps({"gateway_state": "running"}).encode())
