"""A throw-away CA and a server certificate for 127.0.0.1, made with the openssl CLI.

The server certificate carries ``subjectAltName = IP:127.0.0.1`` (and DNS names
if asked): RFC 5922 section 7.1 / RFC 6125 match an IP reference identity only
against an iPAddress SAN, and Python's ``ssl`` hostname check does exactly that,
so a CN alone would fail. Keys are EC P-256 (fast to generate).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CertBundle", "make_certs"]


@dataclass(frozen=True, slots=True)
class CertBundle:
    """Paths of the PEM files one :func:`make_certs` call wrote."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _openssl(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({proc.returncode}): {proc.stderr}")


def make_certs(
    directory: Path,
    *,
    ip: str = "127.0.0.1",
    dns_names: tuple[str, ...] = (),
    days: int = 2,
) -> CertBundle:
    """Write ``ca.pem``/``ca.key`` and ``server.pem``/``server.key`` into ``directory``.

    ``ip`` goes into the server certificate's SAN (``IP:<ip>``) and CN;
    ``dns_names`` adds ``DNS:`` SAN entries (e.g. a SIP domain for sips: URIs).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        [
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
            "-days", str(days), "-subj", "/CN=intercom interop test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        directory,
    )  # fmt: skip
    san = ",".join([f"IP:{ip}", *(f"DNS:{name}" for name in dns_names)])
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyAgreement\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        f"subjectAltName={san}\n"
    )
    _openssl(
        ["req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={ip}"],
        directory,
    )
    _openssl(
        [
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", str(days),
            "-extfile", "server.ext",
        ],
        directory,
    )  # fmt: skip
    return CertBundle(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
