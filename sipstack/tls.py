"""TLS contexts for the SIP transport (RFC 3261 26.2.1, RFC 5630 for sips:)."""

from __future__ import annotations

import ssl

__all__ = ["client_context", "server_context"]


def client_context(ca_file: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """A context that checks the server certificate against ``ca_file``.

    Without ``ca_file`` the system trust store is used. ``verify=False`` is for
    lab set-ups only: the registrar's identity is then not checked.
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def server_context(cert_file: str, key_file: str, ca_file: str | None = None) -> ssl.SSLContext:
    """A context for accepting TLS connections with our certificate.

    With ``ca_file`` client certificates signed by that CA are requested and
    checked if presented (mutual TLS is optional in SIP deployments).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if ca_file is not None:
        ctx.load_verify_locations(ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx
