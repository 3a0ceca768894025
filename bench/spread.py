"""Opening keep-alive connections spread evenly over uvicorn's worker processes.

uvicorn's workers share one listening socket, and whichever worker wakes first accepts: opened
one by one, connections still often pile onto one worker (the other one idles for the whole
phase), which makes figures depend on luck. Here each new connection's server side is looked up
in /proc (its socket inode in /proc/net/tcp, then which worker holds that inode), and connections
that would unbalance the spread are exchanged for new ones. Off Linux, or with one worker, the
connections are simply opened one by one.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.httpclient import Connection, build_request

_EXTRA_ATTEMPTS_PER_CONNECTION = 10


def _server_side_inodes(server_port: int) -> dict[int, int]:
    """client port -> inode of the server's socket for each connection to `server_port`."""
    found: dict[int, int] = {}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == server_port and remote_port:
            found[remote_port] = int(fields[9])
    return found


def _socket_owners(workers: tuple[int, ...]) -> dict[int, int]:
    """socket inode -> worker pid."""
    owners: dict[int, int] = {}
    for pid in workers:
        try:
            entries = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for entry in entries:
            try:
                target = os.readlink(entry.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def owner(connection: Connection, server_port: int, workers: tuple[int, ...]) -> int | None:
    """The worker pid serving `connection`, when /proc tells."""
    client_port = connection.writer.get_extra_info("sockname")[1]
    inode = _server_side_inodes(server_port).get(client_port)
    return _socket_owners(workers).get(inode) if inode is not None else None


async def open_spread(
    host: str, port: int, count: int, workers: tuple[int, ...]
) -> tuple[list[Connection], dict[int, int]]:
    """`count` answered connections, as evenly spread over `workers` as attempts allow; and the spread."""
    probe = build_request("GET", "/healthz", f"{host}:{port}")
    limit = -(-count // max(len(workers), 1))  # ceil: the most connections one worker should hold
    kept: list[Connection] = []
    spare: list[Connection] = []
    spread = dict.fromkeys(workers, 0)
    attempts = count * (1 + _EXTRA_ATTEMPTS_PER_CONNECTION) if len(workers) > 1 else count
    while len(kept) < count and attempts > 0:
        attempts -= 1
        connection = await Connection.open(host, port)
        await connection.request(probe)
        pid = owner(connection, port, workers) if len(workers) > 1 else None
        if pid is not None and spread[pid] >= limit:
            spare.append(connection)
            continue
        if pid is not None:
            spread[pid] += 1
        kept.append(connection)
    while len(kept) < count and spare:
        connection = spare.pop()
        pid = owner(connection, port, workers)
        if pid is not None:
            spread[pid] += 1
        kept.append(connection)
    for connection in spare:
        await connection.close()
    return kept, spread
