"""A lean HTTP/1.1 keep-alive client on raw asyncio streams.

On a 2-core machine the load generator shares the CPU with the server, so it must cost far less
than the server per request: requests are pre-built bytes, and a response is read as a status
line, a header block and a Content-Length (or chunked) body, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError)


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def build_request(method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """The bytes of one HTTP/1.1 request, with Content-Length when there is a body."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.host, self.port = host, port
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(host, port, reader, writer)

    async def reconnect(self) -> None:
        """After the server dropped the connection (or answered something unreadable)."""
        await self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def request(self, data: bytes) -> Response:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get(b"content-length")
        if length is not None:
            body = await self.reader.readexactly(int(length))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._chunked()
        else:
            body = b""
        return Response(status, headers, body)

    async def _chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_all(host: str, port: int, count: int) -> list[Connection]:
    """`count` connections opened one by one, each answered once before the next is opened.

    Opened in a burst, they would all be accepted by whichever uvicorn worker wakes first (the
    asyncio accept loop takes the whole backlog), leaving the other workers idle for the whole run;
    one by one, they spread over the workers like independent clients do.
    """
    probe = build_request("GET", "/healthz", f"{host}:{port}")
    connections = []
    for _ in range(count):
        connection = await Connection.open(host, port)
        await connection.request(probe)
        connections.append(connection)
    return connections


async def close_all(connections: list[Connection]) -> None:
    await asyncio.gather(*(connection.close() for connection in connections))
