"""Helpers that run third-party SIP peers (Kamailio, SIPp, linphonec) for the interop tests.

Each helper starts its program in the foreground with :mod:`subprocess`, logs its
output to a file in a per-test run directory, waits (bounded) until it answers and
ends it by PID. The pytest fixtures in ``tests/interop/conftest.py`` wrap them.
"""

from .certs import CertBundle, make_certs
from .kamailio import Contact, KamailioConfig, KamailioServer
from .ports import PortAllocator
from .process import ManagedProcess, PeerStartError
from .sipp import SippRun, scenario_path

__all__ = [
    "CertBundle",
    "Contact",
    "KamailioConfig",
    "KamailioServer",
    "ManagedProcess",
    "PeerStartError",
    "PortAllocator",
    "SippRun",
    "make_certs",
    "scenario_path",
]
