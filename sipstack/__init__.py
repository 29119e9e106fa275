"""sipstack: a compact SIP user-agent stack, sans-IO at its core, on one select loop.

Names are loaded on first use (PEP 562) so that ``import sipstack`` stays cheap
on a Pi Zero: a process that only parses messages never imports the resolver,
TLS or the account layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .account_config import (
        DEFAULT_ACC_PRIORITY,
        INVALID_ID,
        MAX_ACC,
        PUBLISH_EXPIRATION,
        REG_INTERVAL,
        SECURE_SCHEME,
        AccountConfig,
        AccountInfo,
        RpidElement,
        acc_config_default,
    )
    from .account_events import (
        IncomingMessage,
        IncomingSubscribe,
        MessageStatus,
        RegStateChanged,
        SubscriptionEnded,
    )
    from .digest import AuthenticationError, CredentialInfo, DigestAuthenticator
    from .endpoint import Endpoint, IncomingRequest, RequestFailure
    from .errors import SipParseError, SipStackError, TransportError
    from .framer import StreamFramer
    from .headers import CSeq, Headers, NameAddr, Via
    from .ids import IdGenerator
    from .loop import Loop
    from .message import Request, Response, make_response, parse_message
    from .resolver import Resolver
    from .targets import Target, TargetList
    from .timers import TimerConfig
    from .transaction_layer import TransactionLayer
    from .uri import URI, parse_uri
    from .useragent import UserAgent

_EXPORTS = {
    "account_config": [
        "DEFAULT_ACC_PRIORITY",
        "INVALID_ID",
        "MAX_ACC",
        "PUBLISH_EXPIRATION",
        "REG_INTERVAL",
        "SECURE_SCHEME",
        "AccountConfig",
        "AccountInfo",
        "RpidElement",
        "acc_config_default",
    ],
    "account_events": [
        "IncomingMessage",
        "IncomingSubscribe",
        "MessageStatus",
        "RegStateChanged",
        "SubscriptionEnded",
    ],
    "digest": ["AuthenticationError", "CredentialInfo", "DigestAuthenticator"],
    "endpoint": ["Endpoint", "IncomingRequest", "RequestFailure"],
    "errors": ["SipParseError", "SipStackError", "TransportError"],
    "framer": ["StreamFramer"],
    "headers": ["CSeq", "Headers", "NameAddr", "Via"],
    "ids": ["IdGenerator"],
    "targets": ["Target", "TargetList"],
    "loop": ["Loop"],
    "message": ["Request", "Response", "make_response", "parse_message"],
    "resolver": ["Resolver"],
    "timers": ["TimerConfig"],
    "transaction_layer": ["TransactionLayer"],
    "uri": ["URI", "parse_uri"],
    "useragent": ["UserAgent"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AccountConfig",
    "AccountInfo",
    "AuthenticationError",
    "CSeq",
    "CredentialInfo",
    "DEFAULT_ACC_PRIORITY",
    "DigestAuthenticator",
    "Endpoint",
    "Headers",
    "INVALID_ID",
    "IdGenerator",
    "IncomingMessage",
    "IncomingRequest",
    "IncomingSubscribe",
    "Loop",
    "MAX_ACC",
    "MessageStatus",
    "NameAddr",
    "PUBLISH_EXPIRATION",
    "REG_INTERVAL",
    "RegStateChanged",
    "Request",
    "RequestFailure",
    "Resolver",
    "Response",
    "RpidElement",
    "SECURE_SCHEME",
    "SipParseError",
    "SipStackError",
    "StreamFramer",
    "SubscriptionEnded",
    "Target",
    "TargetList",
    "TimerConfig",
    "TransactionLayer",
    "TransportError",
    "URI",
    "UserAgent",
    "Via",
    "acc_config_default",
    "make_response",
    "parse_message",
    "parse_uri",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sipstack' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
