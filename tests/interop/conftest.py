"""Pytest fixtures that start real Kamailio and SIPp peers on 127.0.0.1.

Fixtures (function-scoped unless noted):

- ``port_allocator`` (session): :class:`PortAllocator`; ``.allocate()`` gives a
  port free on UDP+TCP, ``.allocate(four_digit=True)`` one sipsak can handle.
- ``tls_certs`` (session): :class:`CertBundle` with a CA and a server
  certificate for ``IP:127.0.0.1``.
- ``kamailio_server``: factory ``kamailio_server(users=None, **options)`` that
  starts a :class:`KamailioServer` and stops it after the test.
- ``firmware``: factory ``firmware(name, toml_text, prefix=())`` that starts a
  real ``intercom run`` (:class:`device.Firmware`) and stops it after the test.
- ``sipp``: factory ``sipp(scenario, **options)`` that starts a :class:`SippRun`
  and stops it after the test.

Every peer's log is attached to the report of a failing test, and every peer is
ended by PID at teardown whether the test passed or not.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from sipstack.loop import Loop

from .device import firmware  # noqa: F401 -- fixture shared with tests/robustness
from .media_tools import MediaPhone
from .peers import (
    CertBundle,
    KamailioConfig,
    KamailioServer,
    PortAllocator,
    SippRun,
    make_certs,
)

_PEERS_KEY = pytest.StashKey[list["_Describable"]]()


class _Describable(Protocol):
    name: str

    def describe(self) -> str: ...


class _KamailioLog:
    """Adapter giving a KamailioServer the ``describe()`` the report hook uses."""

    name = "kamailio"

    def __init__(self, server: KamailioServer) -> None:
        self.server = server

    def describe(self) -> str:
        return f"cfg: {self.server.cfg_path}\n{self.server.log_text()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """On failure, append each peer's log to the test report as its own section."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for peer in item.stash.get(_PEERS_KEY, []):
            report.sections.append((f"peer log: {peer.name}", peer.describe()))


def _register_peer(request: pytest.FixtureRequest, peer: _Describable) -> None:
    request.node.stash.setdefault(_PEERS_KEY, []).append(peer)


def _require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip(f"interop peer program(s) not installed: {', '.join(missing)}")


@pytest.fixture
def loop() -> Iterator[Loop]:
    """The loop an in-process phone of the test runs on (wall clock: the peers are real)."""
    with Loop() as lp:
        yield lp


@pytest.fixture
def phone(
    loop: Loop, tmp_path: Path, port_allocator: PortAllocator
) -> Iterator[Callable[..., MediaPhone]]:
    """Factory ``phone(**MediaPhone options)``; each phone is closed after the test."""
    made: list[MediaPhone] = []

    def make(**options: Any) -> MediaPhone:
        p = MediaPhone(
            loop,
            tmp_path / f"ours{len(made)}.wav",
            rtp_low=port_allocator.allocate(count=20),
            **options,
        )
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture(scope="session")
def port_allocator() -> PortAllocator:
    """One allocator per session, so no two peers ever get the same port."""
    return PortAllocator()


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """A CA and a server certificate (SAN IP:127.0.0.1), made once per session."""
    _require("openssl")
    return make_certs(tmp_path_factory.mktemp("certs"))


KamailioFactory = Callable[..., KamailioServer]


@pytest.fixture
def kamailio_server(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    port_allocator: PortAllocator,
) -> Generator[KamailioFactory]:
    """Factory: ``kamailio_server(users=None, *, four_digit_port=False, **options)``.

    ``users``: ``{"alice": "secret"}`` plain passwords (None: no digest auth).
    ``four_digit_port``: pick a port < 10000 (needed by sipsak).
    ``host``: the address to listen on (e.g. the root end of a test's veth pair).
    ``options``: any :class:`KamailioConfig` field: ``realm="test.local"``,
    ``algorithm="MD5" | "SHA-256" | ""``, ``qop="auth" | None``,
    ``challenge_requests=False``, ``tls=False``, ``presence=False``, ``nat=False``,
    ``default_expires=3600``, ``min_expires=10``, ``max_expires=3600``,
    ``min_expires_reject=False``, ``debug=2``.
    Returns a started :class:`KamailioServer` (``.port``, ``.tls_port``,
    ``.ca_cert``, ``.registrations()``, ``.restart()``, ``.kamcmd()``); stopped
    after the test.
    """
    _require("kamailio", "kamcmd")
    servers: list[KamailioServer] = []

    def make(
        users: Mapping[str, str] | None = None,
        *,
        four_digit_port: bool = False,
        host: str = "127.0.0.1",
        **options: Any,
    ) -> KamailioServer:
        config = KamailioConfig(users=users, **options)
        certs = request.getfixturevalue("tls_certs") if config.tls else None
        server = KamailioServer(
            config,
            tmp_path / f"kamailio{len(servers)}",
            port=port_allocator.allocate(four_digit=four_digit_port),
            tls_port=port_allocator.allocate() if config.tls else None,
            certs=certs,
            host=host,
        )
        servers.append(server)
        _register_peer(request, _KamailioLog(server))
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


SippFactory = Callable[..., SippRun]


@pytest.fixture
def sipp(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    port_allocator: PortAllocator,
) -> Generator[SippFactory]:
    """Factory: ``sipp(scenario, *, remote=None, transport="udp", ...)``.

    ``scenario``: name in tests/interop/scenarios (``"uas_register_auth"``) or a Path.
    ``remote``: ``(host, port)`` to send to (UAC); None for a UAS.
    ``transport``: ``"udp"`` or ``"tcp"``. ``calls``: ``-m`` (default 1).
    ``timeout``: SIPp ``-timeout`` seconds (default 15; reaching it is an error).
    ``keys``: ``-key`` values (realm, nonce, algorithm, retry_after, min_expires,
    granted_expires, nat_ip, nat_port, username, expires).
    ``method``: request method for @@METHOD@@ scenarios (default OPTIONS).
    ``render``: ``{"hold_ms": 1000, "silent_ms": 60000}`` pause lengths rendered
    into the scenario. ``sets``: ``-set`` values for <Global> variables.
    ``service``: ``-s``. ``extra_args``: more SIPp arguments. ``port``: local
    SIP port (default: allocated). ``start``: start now (default True; a UAS is
    started and listening when this returns).
    Returns a :class:`SippRun` (``.address``, ``.wait()``, ``.received()``,
    ``.sent()``, ``.describe()``); stopped after the test.
    """
    _require("sipp")
    runs: list[SippRun] = []

    def make(
        scenario: str | Path,
        *,
        remote: tuple[str, int] | None = None,
        transport: str = "udp",
        calls: int = 1,
        timeout: float = 15.0,
        keys: Mapping[str, str] | None = None,
        sets: Mapping[str, str] | None = None,
        method: str = "OPTIONS",
        render: Mapping[str, str | int] | None = None,
        service: str = "service",
        extra_args: Sequence[str] = (),
        port: int | None = None,
        start: bool = True,
    ) -> SippRun:
        run = SippRun(
            scenario,
            tmp_path / "sipp",
            port=port if port is not None else port_allocator.allocate(),
            media_port=port_allocator.allocate(count=4),
            control_port=port_allocator.allocate(),
            remote=remote,
            transport=transport,
            calls=calls,
            timeout=timeout,
            keys=keys,
            sets=sets,
            method=method,
            render=render,
            service=service,
            extra_args=extra_args,
        )
        runs.append(run)
        _register_peer(request, run)
        if start:
            run.start()
        return run

    yield make
    for run in runs:
        run.stop()
