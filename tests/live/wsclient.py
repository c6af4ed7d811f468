"""graphql-transport-ws clients for tests: over a real socket (the `websockets` package) to a running
server, or in process to the ASGI app (for tests that run inside a rolled-back transaction).

Both speak JSON messages and report a close as `Closed(code, reason)`; waiting always has a timeout.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
TIMEOUT = 15.0


class Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code, self.reason = code, reason


class _Messages:
    """The protocol's client side over `_send_text` / `_receive_text`."""

    async def _send_text(self, text: str) -> None:
        raise NotImplementedError

    async def _receive_text(self) -> str:
        raise NotImplementedError

    async def send(self, message: dict[str, Any]) -> None:
        await self._send_text(json.dumps(message))

    async def send_text(self, text: str) -> None:
        """A message as written (it may be malformed)."""
        await self._send_text(text)

    async def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message that is not a ping (answered) or a pong; Closed if the server closes."""
        while True:
            message = json.loads(await asyncio.wait_for(self._receive_text(), timeout))
            if message["type"] == "ping":
                await self.send({"type": "pong"})
            elif message["type"] != "pong":
                return message

    async def init(self, token: str | None, **payload: Any) -> dict[str, Any]:
        """connection_init (with `authorization` when a token is given); returns the server's answer."""
        if token is not None:
            payload["authorization"] = f"Bearer {token}"
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(self, id_: str, query: str, variables: dict[str, Any] | None = None, **extra: Any) -> None:
        await self.send({"type": "subscribe", "id": id_, "payload": {"query": query, "variables": variables or {},
                                                                     **extra}})

    async def complete(self, id_: str) -> None:
        await self.send({"type": "complete", "id": id_})

    async def data(self, id_: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message, which must be a `next` for `id_` without errors; returns its `data`."""
        message = await self.receive(timeout)
        assert message["type"] == "next" and message["id"] == id_, message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]

    async def error_codes(self, id_: str, timeout: float = TIMEOUT) -> list[str]:
        """The next message, which must be an `error` for `id_`; returns its errors' codes."""
        message = await self.receive(timeout)
        assert message["type"] == "error" and message["id"] == id_, message
        return [error["extensions"]["code"] for error in message["payload"]]

    async def closed(self, timeout: float = TIMEOUT) -> Closed:
        """Wait until the server closes the connection (any message before that fails the test)."""
        try:
            message = await self.receive(timeout)
        except Closed as closed:
            return closed
        raise AssertionError(f"expected the connection to close, got {message}")


class SocketClient(_Messages):
    """A real websocket connection to `url`."""

    def __init__(self, url: str, *, subprotocols: tuple[str, ...] = (PROTOCOL,),
                 headers: dict[str, str] | None = None) -> None:
        self.url, self.subprotocols, self.headers = url, subprotocols, headers or {}
        self.connection: ClientConnection | None = None

    async def __aenter__(self) -> SocketClient:
        self.connection = await connect(self.url, subprotocols=list(self.subprotocols),  # type: ignore[arg-type]
                                        additional_headers=self.headers, open_timeout=TIMEOUT)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def _send_text(self, text: str) -> None:
        assert self.connection is not None
        await self.connection.send(text)

    async def _receive_text(self) -> str:
        assert self.connection is not None
        try:
            return await self.connection.recv()  # type: ignore[return-value]
        except ConnectionClosed as error:
            close = error.rcvd
            raise Closed(close.code if close else None, close.reason if close else "") from None


class AsgiClient(_Messages):
    """A websocket session driven straight into an ASGI app, in this event loop (no socket)."""

    def __init__(self, app: Any, *, subprotocols: tuple[str, ...] = (PROTOCOL,),
                 headers: dict[str, str] | None = None) -> None:
        self.app, self.subprotocols, self.headers = app, subprotocols, headers or {}
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.closed_by_server: Closed | None = None

    async def __aenter__(self) -> AsgiClient:
        scope = {"type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
                 "path": "/graphql", "raw_path": b"/graphql", "root_path": "", "query_string": b"",
                 "server": ("testserver", 80), "client": ("127.0.0.1", 50000),
                 "headers": [(b"host", b"testserver"), *((k.lower().encode(), v.encode()) for k, v in self.headers.items())],
                 "subprotocols": list(self.subprotocols)}
        self.task = asyncio.create_task(self.app(scope, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "websocket.connect"})
        accepted = await asyncio.wait_for(self.from_app.get(), TIMEOUT)
        if accepted["type"] != "websocket.accept":
            self.closed_by_server = Closed(accepted.get("code"), accepted.get("reason", ""))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1000})
        assert self.task is not None
        await asyncio.wait_for(self.task, TIMEOUT)

    async def _send_text(self, text: str) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": text})

    async def _receive_text(self) -> str:
        if self.closed_by_server is not None:
            raise self.closed_by_server
        message = await self.from_app.get()
        if message["type"] == "websocket.close":
            self.closed_by_server = Closed(message.get("code"), message.get("reason") or "")
            raise self.closed_by_server
        return message["text"]
