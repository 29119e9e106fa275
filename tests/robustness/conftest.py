"""Fixtures for the robustness suite (issue 8): the interop peers and devices.

Every test here runs the real firmware process(es) and real peers (Kamailio,
SIPp, sipvicious) on 127.0.0.1 or inside network namespaces it creates. The
whole package is marked ``robustness``: ``scripts/test -m robustness`` runs it
apart from the fast suite.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.conftest import (  # noqa: F401 -- fixtures re-exported for this package
    firmware,
    kamailio_server,
    port_allocator,
    pytest_runtest_makereport,
    sipp,
    tls_certs,
)

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.robustness)
