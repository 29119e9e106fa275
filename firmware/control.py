"""The control socket: how ``intercom status`` and friends talk to ``intercom run``.

A Unix stream socket (default ``/run/intercom/control.sock``, mode 0660 so that
root and the ``intercom`` group may use it over SSH, nobody else). Framing is
one JSON object per line both ways, so it can be poked with ``socat`` too::

    -> {"cmd": "status", "args": {}}
    <- {"ok": true, "result": {...}}
    <- {"ok": false, "error": "no call to answer"}

A streaming command (``log -f``, ``trace``) answers ``{"ok": true, "stream":
true}`` and then one ``{"item": ...}`` line per record until the client hangs up.

The server lives on the firmware's single loop: non-blocking sockets, no
threads. Everything is bounded (a request line, the number of clients, the
bytes queued for a slow reader) because a stuck SSH session must never cost the
door station memory or time. The client is ordinary blocking code: it runs in
the short-lived CLI process, not in the firmware.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

__all__ = [
    "DEFAULT_CONTROL_PATH",
    "ENV_VAR",
    "MAX_LINE",
    "ControlConnection",
    "ControlError",
    "ControlServer",
    "ControlClient",
    "FirmwareUnreachable",
    "RemoteError",
    "control_path",
]

log = logging.getLogger(__name__)

#: Where the socket lives unless ``--control`` or ``$INTERCOM_CONTROL`` say otherwise.
DEFAULT_CONTROL_PATH = "/run/intercom/control.sock"
#: The environment variable naming the socket (several instances side by side in tests).
ENV_VAR = "INTERCOM_CONTROL"
#: Longest request line accepted (a MESSAGE text is the largest thing anyone sends).
MAX_LINE = 65536
#: Bytes queued for one slow reader before its stream lines are dropped.
MAX_QUEUED = 1 << 20
#: Connections served at once; more are refused at accept time.
MAX_CLIENTS = 16


def control_path(option: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The socket path: ``--control`` wins, then ``$INTERCOM_CONTROL``, then the default."""
    if option:
        return option
    environ = os.environ if env is None else env
    return environ.get(ENV_VAR) or DEFAULT_CONTROL_PATH


class ControlError(Exception):
    """A request the firmware cannot carry out; the message goes to the user as is."""


class _Loop(Protocol):
    """The part of :class:`sipstack.loop.Loop` the server uses."""

    def add_reader(self, fd: Any, callback: Callable[[], object]) -> None: ...

    def remove_reader(self, fd: Any) -> None: ...

    def add_writer(self, fd: Any, callback: Callable[[], object]) -> None: ...

    def remove_writer(self, fd: Any) -> None: ...


Handler = Callable[[str, dict[str, Any], "ControlConnection"], None]


class ControlConnection:
    """One client. The handler answers with :meth:`reply` / :meth:`fail` (now or
    later, for commands that take time) or turns it into a stream with
    :meth:`start_stream` and then :meth:`push`."""

    def __init__(self, server: ControlServer, sock: socket.socket) -> None:
        self._server = server
        self.sock = sock
        self._inbuf = bytearray()
        self._outbuf = bytearray()
        self.closed = False
        self.streaming = False
        self.busy = False  # a request is being answered: later lines wait
        self.dropped = 0
        """Stream items dropped because the reader fell behind."""
        self.on_close: Callable[[], None] | None = None

    # -- answers ---------------------------------------------------------------

    def reply(self, result: object = None) -> None:
        """Answer the pending request with ``result`` (JSON-able)."""
        self._answer({"ok": True, "result": result})

    def fail(self, message: str) -> None:
        """Answer the pending request with an error for the user."""
        self._answer({"ok": False, "error": message})

    def start_stream(self) -> None:
        """Keep the connection open and send items with :meth:`push`."""
        self.streaming = True
        self._answer({"ok": True, "stream": True})

    def push(self, item: object) -> bool:
        """Send one stream item; False when the client is gone or too slow (dropped)."""
        if self.closed:
            return False
        data = _encode({"item": item})
        if len(self._outbuf) + len(data) > MAX_QUEUED:
            self.dropped += 1
            return False
        self._queue(data)
        return True

    def _answer(self, message: Mapping[str, Any]) -> None:
        if self.closed:
            return
        self.busy = False
        self._queue(_encode(message))
        if not self.streaming:
            self._server.serve_next(self)

    # -- I/O -------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        was_empty = not self._outbuf
        self._outbuf += data
        if was_empty:
            self._flush()

    def _flush(self) -> None:
        while self._outbuf and not self.closed:
            try:
                sent = self.sock.send(self._outbuf)
            except (BlockingIOError, InterruptedError):
                self._server.loop.add_writer(self.sock, self._flush)
                return
            except OSError:
                self.close()
                return
            del self._outbuf[:sent]
        if not self.closed:
            self._server.loop.remove_writer(self.sock)

    def feed(self, data: bytes) -> list[bytes] | None:
        """Add received bytes; return complete lines, or None when the line is too long."""
        self._inbuf += data
        lines: list[bytes] = []
        while (nl := self._inbuf.find(b"\n")) >= 0:
            lines.append(bytes(self._inbuf[:nl]))
            del self._inbuf[: nl + 1]
        if len(self._inbuf) > MAX_LINE or any(len(x) > MAX_LINE for x in lines):
            return None
        return lines

    def close(self) -> None:
        """Drop the connection (idempotent); runs :attr:`on_close` once."""
        if self.closed:
            return
        self.closed = True
        loop = self._server.loop
        loop.remove_reader(self.sock)
        loop.remove_writer(self.sock)
        self.sock.close()
        self._server.forget(self)
        callback, self.on_close = self.on_close, None
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("control connection close callback failed")


def _encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class ControlServer:
    """The listening socket on the loop; each request line goes to ``handler``.

    ``handler(cmd, args, connection)`` must answer through the connection. It
    may raise :class:`ControlError` (the message is sent as the error) or any
    other exception (logged; the client gets "internal error").
    """

    def __init__(self, loop: _Loop, path: str, handler: Handler, *, mode: int = 0o660) -> None:
        self.loop = loop
        self.path = path
        self._handler = handler
        self._mode = mode
        self._sock: socket.socket | None = None
        self._clients: list[ControlConnection] = []
        self._pending: dict[ControlConnection, list[bytes]] = {}

    def start(self) -> None:
        """Bind and listen; a stale socket file from a crashed run is replaced,
        a live one (another instance) is an error naming the path."""
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o750, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, f"{self.path} exists and is not a socket")
            if _socket_alive(self.path):
                raise OSError(
                    errno.EADDRINUSE,
                    f"another intercom already listens on {self.path} (use --control PATH)",
                )
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # umask first, chmod after: no moment where the socket is wider open
            old = os.umask(0o777 & ~self._mode)
            try:
                sock.bind(self.path)
            finally:
                os.umask(old)
            os.chmod(self.path, self._mode)
            sock.listen(8)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.loop.add_reader(sock, self._accept)

    @property
    def clients(self) -> int:
        """Connections open now."""
        return len(self._clients)

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("control socket accept failed: %s", exc)
                return
            if len(self._clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    conn.send(_encode({"ok": False, "error": "too many control clients"}))
                conn.close()
                continue
            conn.setblocking(False)
            client = ControlConnection(self, conn)
            self._clients.append(client)
            self.loop.add_reader(conn, functools.partial(self._readable, client))

    def _readable(self, client: ControlConnection) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            client.close()
            return
        if not data:
            client.close()
            return
        if client.streaming:
            return  # a stream client has nothing more to say; its bytes are ignored
        lines = client.feed(data)
        if lines is None:
            client.fail(f"request longer than {MAX_LINE} bytes")
            client.close()
            return
        self._pending.setdefault(client, []).extend(x for x in lines if x.strip())
        self.serve_next(client)

    def serve_next(self, client: ControlConnection) -> None:
        """Hand the client's next request line to the handler (one at a time)."""
        queue = self._pending.get(client)
        if client.closed or client.busy or client.streaming or not queue:
            return
        line = queue.pop(0)
        try:
            request = json.loads(line)
            cmd = request["cmd"]
            args = request.get("args") or {}
            if not isinstance(cmd, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            client.fail('bad request: expected {"cmd": "...", "args": {...}} on one line')
            return
        client.busy = True
        try:
            self._handler(cmd, args, client)
        except ControlError as exc:
            client.fail(str(exc))
        except Exception as exc:
            log.exception("control command %r failed", cmd)
            client.fail(f"internal error in {cmd}: {exc}")

    def forget(self, client: ControlConnection) -> None:
        """A connection closed: stop tracking it."""
        if client in self._clients:
            self._clients.remove(client)
        self._pending.pop(client, None)

    def close(self) -> None:
        """Close every connection and remove the socket file."""
        for client in list(self._clients):
            client.close()
        if self._sock is not None:
            self.loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _socket_alive(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


# -- the client (in the CLI process) ----------------------------------------------


class FirmwareUnreachable(Exception):
    """The firmware's socket is missing, refuses us or does not answer (exit code 3)."""


class RemoteError(Exception):
    """The firmware understood the request and said no (exit code 1)."""


class ControlClient:
    """Blocking client of :class:`ControlServer`, for the ``intercom`` commands."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except FileNotFoundError:
            sock.close()
            raise FirmwareUnreachable(
                f"no firmware control socket at {self.path}: is `intercom run` running? "
                "(systemctl status intercom; or pass --control PATH)"
            ) from None
        except PermissionError:
            sock.close()
            raise FirmwareUnreachable(
                f"permission denied on {self.path}: run as root or a member of its group"
            ) from None
        except OSError as exc:
            sock.close()
            raise FirmwareUnreachable(f"cannot connect to {self.path}: {exc.strerror}") from None
        return sock

    def _send(self, sock: socket.socket, cmd: str, args: Mapping[str, Any]) -> None:
        data = json.dumps({"cmd": cmd, "args": dict(args)}).encode() + b"\n"
        try:
            sock.sendall(data)
        except OSError as exc:
            raise FirmwareUnreachable(f"lost the firmware at {self.path}: {exc}") from None

    def request(self, cmd: str, **args: Any) -> Any:
        """Send one request and return its result; raises :class:`RemoteError`."""
        with self._connect() as sock:
            self._send(sock, cmd, args)
            lines = _lines(sock, self.path)
            answer = next(lines, None)
        if answer is None:
            raise FirmwareUnreachable(f"the firmware at {self.path} closed without answering")
        if not answer.get("ok"):
            raise RemoteError(str(answer.get("error", "unknown error")))
        return answer.get("result")

    def stream(self, cmd: str, **args: Any) -> Iterator[Any]:
        """Send a streaming request and yield its items until the firmware stops
        (or the caller stops iterating: Ctrl-C). No timeout while streaming."""
        sock = self._connect()
        try:
            self._send(sock, cmd, args)
            lines = _lines(sock, self.path)
            first = next(lines, None)
            if first is None:
                raise FirmwareUnreachable(f"the firmware at {self.path} closed without answering")
            if not first.get("ok"):
                raise RemoteError(str(first.get("error", "unknown error")))
            if not first.get("stream"):
                yield from first.get("result") or ()
                return
            sock.settimeout(None)
            for message in lines:
                yield message.get("item")
        finally:
            sock.close()


def _lines(sock: socket.socket, path: str) -> Iterator[dict[str, Any]]:
    buf = bytearray()
    while True:
        while (nl := buf.find(b"\n")) >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            try:
                message = json.loads(line)
            except ValueError:
                raise FirmwareUnreachable(f"garbled answer from {path}") from None
            if isinstance(message, dict):
                yield message
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise FirmwareUnreachable(f"the firmware at {path} did not answer in time") from None
        except OSError as exc:
            raise FirmwareUnreachable(f"lost the firmware at {path}: {exc}") from None
        if not data:
            return
        buf += data
