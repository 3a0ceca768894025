"""The `fhir-server` command line: serve, migrate, load, and the administration groups."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from fhir_server.admin import commands as admin_commands
from fhir_server.admin import keys as key_commands
from fhir_server.admin.demo import seed_if_empty
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.repository import Store


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    if settings.allow_unauthenticated_loopback and not _is_loopback(args.host):
        print(
            f"refusing to serve on {args.host}: with FHIR_ALLOW_UNAUTHENTICATED_LOOPBACK set, the server "
            "only listens on a loopback address (127.0.0.1, ::1 or localhost), where nothing else can reach it",
            file=sys.stderr,
        )
        return 2
    engine = make_engine(settings.database_url)
    upgrade(engine)
    _seed_demo(engine, settings, f"http://{args.host}:{args.port}")
    print(
        f"FHIR R4 API at http://{args.host}:{args.port}{settings.base_path} (database {settings.database_url})",
        flush=True,
    )
    uvicorn.run(
        "fhir_server.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


def _seed_demo(engine: Any, settings: Settings, origin: str) -> None:
    """On a database without accounts, create the demo clinic, users and app (admin/demo.py)."""
    if settings.public_base_url:
        origin = settings.public_base_url.removesuffix(settings.base_path)
    message = seed_if_empty(Store(engine), settings, origin)
    engine.dispose()
    if message:
        print(message, flush=True)


def migrate(args: argparse.Namespace) -> int:
    settings = Settings()
    upgrade(make_engine(settings.database_url))
    print(f"database at head: {settings.database_url}")
    return 0


def _chunks(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                chunk.append(json.loads(line))
                if len(chunk) == size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _rewrite(node: Any, ids: dict[str, str]) -> Any:
    """Point references at the ids the server assigned to resources loaded earlier."""
    if isinstance(node, dict):
        return {
            k: (ids.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, ids)) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item, ids) for item in node]
    return node


def _post(client: httpx.Client, base: str, bundle: dict[str, Any]) -> dict[str, Any]:
    response = client.post(
        f"{base}/",
        content=json.dumps(bundle),
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
    )
    if response.status_code >= 400:
        raise SystemExit(f"load failed ({response.status_code}): {response.text[:2000]}")
    return dict(response.json())


def load(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    files = [Path(p) for p in args.paths]
    total = 0
    token = args.token or os.environ.get("FHIR_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=300, headers=headers) as client:
        for path in tqdm(files, unit="file", disable=args.quiet):
            if path.suffix == ".ndjson":
                total += _load_ndjson(client, base, path, args.batch_size)
            else:
                bundle = json.loads(path.read_bytes())
                total += len(_post(client, base, bundle).get("entry", []))
    print(f"loaded {total} resources from {len(files)} files")
    return 0


def _load_ndjson(client: httpx.Client, base: str, path: Path, batch_size: int) -> int:
    """Each chunk is one transaction; references to lines loaded before use the ids assigned then."""
    ids: dict[str, str] = {}
    count = 0
    for chunk in _chunks(path, batch_size):
        entries = []
        for resource in chunk:
            old = f"{resource['resourceType']}/{resource.get('id', '')}"
            full_url = f"urn:uuid:{uuid.uuid4()}"
            ids.setdefault(old, full_url)
            entries.append((old, full_url, resource))
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": full_url,
                    "resource": _rewrite(resource, ids),
                    "request": {"method": "POST", "url": resource["resourceType"]},
                }
                for _, full_url, resource in entries
            ],
        }
        response = _post(client, base, bundle)
        for (old, _, _), answer in zip(entries, response.get("entry", []), strict=True):
            ids[old] = answer["response"]["location"].split("/_history")[0]
        count += len(entries)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="migrate, then serve the FHIR API")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8080)
    serve_cmd.add_argument("--workers", type=int, default=1)
    serve_cmd.set_defaults(handler=serve)
    commands.add_parser("migrate", help="bring the database schema to head").set_defaults(handler=migrate)
    load_cmd = commands.add_parser("load", help="POST transaction Bundles (.json) or NDJSON files")
    load_cmd.add_argument("paths", nargs="+")
    load_cmd.add_argument("--url", default="http://127.0.0.1:8080/fhir")
    load_cmd.add_argument("--batch-size", type=int, default=500)
    load_cmd.add_argument("--quiet", action="store_true")
    load_cmd.add_argument("--token", help="a bearer access token with write scopes (default: $FHIR_TOKEN)")
    load_cmd.set_defaults(handler=load)
    admin_commands.register(commands)
    key_commands.register(commands)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
