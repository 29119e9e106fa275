"""Interop tests: our SIP stack against real third-party SIP software on 127.0.0.1.

``peers/`` holds the helpers that start Kamailio and SIPp (and make certificates),
``conftest.py`` turns them into pytest fixtures, ``kamailio/`` and ``scenarios/``
hold the Kamailio config template and the SIPp scenarios.
"""
