"""A tap on the SIP transports: ``intercom trace``, and where registrars see us.

Every message in and out is copied, masked, to the ``intercom trace`` clients
(none connected: nothing is formatted). Masking is two-fold: the patterns of
:func:`firmware.logring.mask_secrets` (digest ``response=``, ``password=``,
``sip:user:password@``), and every password of the config itself, wherever
it might turn up, so no ``data`` from ``[[accounts.cred_info]]`` (or the
secrets file) is ever shown. Digest is a challenge-response scheme (RFC 3261
22.4, RFC 7616): the password itself never travels, only hashes do.

The 2xx answers to REGISTER are also read for RFC 3581 ``received``/``rport``:
where the registrar saw us, for the NAT check of ``intercom doctor``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from firmware.logring import mask_secrets

if TYPE_CHECKING:
    from firmware.config import Config
    from firmware.control import ControlConnection
    from sipstack.message import Request, Response
    from sipstack.transport import TransportManager
    from sipstack.transport_base import Destination, Peer

__all__ = ["SipTap", "config_secrets"]

# Shorter "passwords" would mask half of every message (and are no secret anyway).
_MIN_SECRET = 4
_MAX_SEEN = 64


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every password (or HA1) in ``config``, longest first (a secret that
    contains another is masked whole)."""
    found = {c.data for a in config.accounts for c in a.cred_info if len(c.data) >= _MIN_SECRET}
    return tuple(sorted(found, key=len, reverse=True))


class SipTap:
    """Wraps one transport manager's ``on_message`` and ``send_raw``.

    The transport manager has no tap hook; the two are wrapped on this
    instance only. ``secrets`` are masked wherever they appear (set them
    again after a reload).
    """

    def __init__(self, transports: TransportManager, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(secrets)
        self.followers: list[ControlConnection] = []
        self.reg_seen: dict[str, tuple[str, int]] = {}  # REGISTER Call-ID -> received, rport
        deliver = transports.on_message
        send_raw = transports.send_raw

        def on_message(message: Request | Response, peer: Peer) -> None:
            self._note_incoming(message)
            if self.followers:
                self._push("in", f"{peer.transport}:{peer.host}:{peer.port}", message.to_bytes())
            deliver(message, peer)

        def traced_send(data: bytes, dest: Destination, on_error: Any = None) -> None:
            if self.followers:
                self._push("out", f"{dest.transport}:{dest.host}:{dest.port}", data)
            send_raw(data, dest, on_error)

        transports.on_message = on_message
        setattr(transports, "send_raw", traced_send)  # noqa: B010 - instance-level wrap

    def mask(self, text: str) -> str:
        """``text`` with digest responses, password-looking values and the config's
        passwords replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_secrets(text)

    def _push(self, direction: str, where: str, data: bytes) -> None:
        item = {
            "time": time.time(),
            "dir": direction,
            "peer": where,
            "text": self.mask(data.decode("utf-8", "replace")),
        }
        for conn in list(self.followers):
            conn.push(item)

    def _note_incoming(self, message: Request | Response) -> None:
        """Remember where registrars see us (RFC 3581 received/rport) for the NAT check."""
        from sipstack.message import Response

        if not isinstance(message, Response) or not 200 <= message.status < 300:
            return
        try:
            if message.cseq.method != "REGISTER":
                return
            via = message.top_via
            received, rport = via.received, via.rport
        except Exception:
            return  # a peer's malformed header: no NAT hint, nothing else to do
        if received is not None or rport is not None:
            self.reg_seen[message.call_id] = (received or via.host, rport or via.port or 5060)
            if len(self.reg_seen) > _MAX_SEEN:
                self.reg_seen.pop(next(iter(self.reg_seen)))
