"""The calls' RTP media factory, built for the first call, with each account's SRTP policy.

:class:`~sipstack.media_factory.RtpMediaFactory` holds one
:class:`~sipstack.srtp.SrtpPolicy`, but PJSUA's ``use_srtp`` and
``srtp_secure_signaling`` are account settings, and one device may have a TLS
account that must use SRTP next to a LAN account that must not. So the
factory is given ``srtp_of``, the policy of the call's own account (looked up
by the call's ``acc_id``), which it asks before the call's first offer or
answer; the factory keeps each call's mode and keys from then on
(re-offers reuse them, RFC 4568 6.1), so a later call on another account cannot
change an earlier one's.

This module imports the RTP stack: the App imports it only when the first call
needs media (:class:`~firmware.audio_path.DeferredMedia`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sipstack.media_factory import RtpMediaFactory, call_signalling
from sipstack.srtp import SrtpPolicy

if TYPE_CHECKING:
    from firmware.app import App
    from sipstack.calls import CallManager

__all__ = ["account_policy", "build_media", "media_address"]


def account_policy(app: App, calls: CallManager, call_id: int) -> SrtpPolicy:
    """The SRTP policy of the account the call belongs to (plain RTP if it is gone)."""
    assert app.accounts is not None
    settings = app.accounts.settings.get(calls.call_get_info(call_id).acc_id)
    return settings.srtp_policy() if settings is not None else SrtpPolicy()


def build_media(app: App) -> RtpMediaFactory:
    """The RTP media factory, plugged into the app's audio path (the first call's)."""
    assert app.audio is not None and app.calls is not None
    audio, calls = app.audio, app.calls
    media = RtpMediaFactory(
        app.loop,
        srtp_of=lambda c: account_policy(app, calls, c),
        host=app.media_host,
        address_of=lambda c: media_address(app, c),
        conference=audio.conference,
        audio_slot=audio.audio_slot,
        ptime=app.config.audio.ptime,
        # PJSUA's srtp_secure_signaling needs to know how each call's SIP travels
        signalling_of=lambda c: call_signalling(calls.call_get_info(c)),
    )
    media.on_dtmf = calls.on_media_dtmf
    return media


def media_address(app: App, call_id: int) -> str:
    """The address our SDP offers: the bound host, else the one our packets
    leave from toward the default account's registrar (or the default route)."""
    assert app.ua is not None
    if app.media_host not in ("0.0.0.0", "::"):
        return app.media_host
    ua = app.ua
    remote = "192.0.2.1"  # TEST-NET: the kernel answers with the default-route address
    default = ua.acc_get_default()
    if ua.acc_is_valid(default):
        dest = ua.acc_get_account(default).reg_destination
        if dest is not None:
            remote = dest.host
    tm = ua.endpoint.transports
    udp = tm.find("udp")
    found = tm.local_address(udp if udp is not None else 0, remote)
    return found if found is not None else "127.0.0.1"  # no route at all: offline
