"""Account configuration and information, named as PJSUA's ``pjsua_acc_config``.

The firmware's TOML keys and the user agent's API use these names one to one,
so someone who knows PJSUA finds every knob where they expect it.
"""

from __future__ import annotations

import copy
import enum

from .digest import CredentialInfo
from .records import dataclass, field

__all__ = [
    "MAX_ACC",
    "REG_INTERVAL",
    "PUBLISH_EXPIRATION",
    "DEFAULT_ACC_PRIORITY",
    "SECURE_SCHEME",
    "INVALID_ID",
    "KA_INTERVAL",
    "AccountConfig",
    "AccountInfo",
    "OnlineStatus",
    "RpidElement",
    "acc_config_default",
]

#: Static account slots (PJSUA_MAX_ACC).
MAX_ACC = 8
#: Default registration expiry asked for, seconds (PJSUA_REG_INTERVAL).
REG_INTERVAL = 300
#: Default PUBLISH expiry, seconds (PJSUA_PUBLISH_EXPIRATION).
PUBLISH_EXPIRATION = 600
#: Default account priority (PJSUA_DEFAULT_ACC_PRIORITY).
DEFAULT_ACC_PRIORITY = 0
#: Scheme of secure URIs (PJSUA_SECURE_SCHEME).
SECURE_SCHEME = "sips"
#: The id of no account (PJSUA_INVALID_ID).
INVALID_ID = -1
#: Default NAT keep-alive interval, seconds (PJSUA_KA_INTERVAL).
KA_INTERVAL = 15


class OnlineStatus(enum.Enum):
    """Basic presence status (RFC 3863 ``basic``)."""

    OFFLINE = "closed"
    ONLINE = "open"


@dataclass(frozen=True, slots=True)
class RpidElement:
    """The RPID extension of a presence document (RFC 4480), like ``pjrpid_element``.

    ``activity`` is an RPID activity token (``away``, ``busy``, ``on-the-phone``,
    ...); ``note`` free text; ``id`` the person element id (generated when empty).
    """

    id: str = ""
    activity: str | None = None
    note: str | None = None


@dataclass
class AccountConfig:
    """Everything one account slot is configured with (``pjsua_acc_config``).

    - ``id``: the account URI (``"Alice" <sip:alice@example.com>``), From of its requests.
    - ``reg_uri``: registrar URI; empty means no registration.
    - ``proxy``: the account's outbound route set (``sip:proxy.example.com;lr``).
    - ``cred_info``: digest credentials (realm, username, data; ``*`` realm = any).
    - ``reg_*`` / ``unreg_timeout``: registration timing, seconds (PJSUA semantics:
      ``reg_first_retry_interval`` 0 means "same as ``reg_retry_interval``";
      ``reg_retry_interval`` 0 disables retries).
    - ``reg_use_proxy``: bit 1 = global outbound proxy, bit 2 = account proxy (3 = both).
    - ``contact_params`` / ``contact_uri_params``: ``;name=value`` text added to the
      Contact header / URI.
    - ``allow_contact_rewrite``: follow the registrar's received/rport (RFC 3581).
    - ``allow_via_rewrite``: use the received/rport address in our Via sent-by too.
    - ``ka_interval`` / ``ka_data``: NAT keep-alives (UDP datagram or CRLF on streams);
      0 disables.
    - ``publish_enabled``: PUBLISH our presence (RFC 3903) to the account's server.
    - ``priority``: higher wins in account matching.
    - ``transport_id``: bind the account to one transport (-1: any).
    - ``use_rfc5626``: add ``+sip.instance`` and ``reg-id`` (SIP outbound).
    """

    id: str = ""
    reg_uri: str = ""
    proxy: list[str] = field(default_factory=list)
    cred_info: list[CredentialInfo] = field(default_factory=list)
    reg_timeout: int = REG_INTERVAL
    reg_retry_interval: int = 300
    reg_first_retry_interval: int = 0
    reg_delay_before_refresh: int = 5
    unreg_timeout: float = 4.0
    reg_use_proxy: int = 3
    contact_params: str = ""
    contact_uri_params: str = ""
    allow_contact_rewrite: bool = True
    allow_via_rewrite: bool = True
    ka_interval: int = KA_INTERVAL
    ka_data: bytes = b"\r\n"
    publish_enabled: bool = False
    priority: int = DEFAULT_ACC_PRIORITY
    transport_id: int = INVALID_ID
    use_rfc5626: bool = False
    register_on_acc_add: bool = True

    def dup(self) -> AccountConfig:
        """A deep copy (``pjsua_acc_config_dup``)."""
        return copy.deepcopy(self)


def acc_config_default() -> AccountConfig:
    """The default configuration (``pjsua_acc_config_default``)."""
    return AccountConfig()


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What ``pjsua_acc_info`` reports about one account.

    ``expires`` is the remaining registration time in seconds (-1 when not
    registered); ``status`` the last registration status code (0 before any
    attempt) and ``status_text`` its reason.
    """

    id: int
    uri: str
    is_default: bool
    has_registration: bool
    expires: int
    status: int
    status_text: str
    online_status: bool
    online_status_text: str
    rpid: RpidElement
