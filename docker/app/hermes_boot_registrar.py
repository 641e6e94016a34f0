"""Gateway slot registration through the image's profile registrar.

hermes-agent's s6 backend (``hermes_cli.service_manager.S6ServiceManager``)
registers a profile's gateway by writing a service directory into
``/run/service`` itself and unregisters it with ``s6-svwait``,
``s6-svscanctl`` and ``rmtree``. In this image that scan directory belongs to
root, because s6-supervise runs every script in it as root: the runtime user
cannot write there, so the application's own calls fail (``profile create``
printed "Could not register s6 gateway service: Permission denied" whenever it
got there before the registrar).

This module, loaded from a ``.pth`` file of the image's root-owned venv,
replaces exactly those two methods, when ``hermes_cli.service_manager`` is
imported, with ``reconcile-profiles register <p> --down`` and
``reconcile-profiles unregister <p>``: the registrar renders and publishes a
root-owned slot, and the command waits until it did. Everything else of the
backend (start, stop, restart, status, the desired-state file) is the
application's own and works through the slot's ``supervise/control``.

Nothing changes when the registrar program is absent, or when
``HERMES_GATEWAY_SLOTS=user-owned`` gives the runtime user the scan directory.
"""

import importlib.abc
import importlib.machinery
import os
import subprocess
import sys

_TARGET = "hermes_cli.service_manager"
_REGISTRAR = "/opt/hermes/docker/bin/reconcile-profiles"
# reconcile-profiles exit codes (README, "Profile registrar").
_ALREADY_REGISTERED = 3
_TIMEOUT = 4


def _enabled():
    if os.environ.get("HERMES_GATEWAY_SLOTS", "").strip() == "user-owned":
        return False
    return os.access(_REGISTRAR, os.X_OK)


def _run(args):
    try:
        done = subprocess.run(
            [_REGISTRAR, *args], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"{_REGISTRAR} {' '.join(args)}: {exc}") from exc
    return done.returncode, (done.stderr or done.stdout).strip()


def _register(self, profile, *, extra_env=None, start_now=True):
    from hermes_cli.service_manager import validate_profile_name

    validate_profile_name(profile)
    code, message = _run(["register", profile] + ([] if start_now else ["--down"]))
    if code == _ALREADY_REGISTERED:
        # The application treats ValueError as "already registered" and stays quiet.
        raise ValueError(f"profile gateway {profile!r} already registered")
    if code == _TIMEOUT:
        raise RuntimeError(f"the profile registrar did not publish gateway-{profile} in time: {message}")
    if code != 0:
        raise RuntimeError(message or f"reconcile-profiles register exited {code}")


def _unregister(self, profile):
    from hermes_cli.service_manager import validate_profile_name

    validate_profile_name(profile)
    code, message = _run(["unregister", profile])
    if code != 0:
        raise RuntimeError(message or f"reconcile-profiles unregister exited {code}")


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        manager = getattr(module, "S6ServiceManager", None)
        if manager is not None and _enabled():
            manager.register_profile_gateway = _register
            manager.unregister_profile_gateway = _unregister


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install():
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
