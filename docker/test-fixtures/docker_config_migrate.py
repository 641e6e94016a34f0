#!/usr/bin/env python3
"""TEST DOUBLE of the application's config migration helper (SPEC S2-22).

Prints which user ran it, so the suite can check that stage2-setup runs the
helper as the runtime user.
"""
import os

home = os.environ.get("HERMES_HOME") or "/opt/data"
print(f"[config-migrate] test double checked {home}/config.yaml as uid {os.getuid()} gid {os.getgid()}", flush=True)
