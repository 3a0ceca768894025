"""`fhir-server keys ...`: the keys of field encryption and searchable hashes (issue 5 point 9).

- `keys status`: every key in use (from the settings or the database), which is current, and
  how many stored rows still use it.
- `keys generate [--kid K]`: a new random key as `kid:base64key`, for FHIR_ENCRYPTION_KEYS or
  FHIR_SEARCH_HASH_KEYS (prepend it: the first key is current).
- `keys rotate [--hash] [--wait S]`: with database keys, adds a new current encryption key (and
  search-hash key with `--hash`), waits until running servers have read it (FHIR_KEY_REFRESH_SECONDS),
  then re-encrypts; with keys from the settings, prepend a generated key there first (every
  process), then run `keys reencrypt`.
- `keys reencrypt`: every stored resource, version and protected index row moved to the current
  keys (store/rekey.py); afterwards `keys status` shows 0 rows for the old keys.
- `keys retire KID [--hash]`: deletes an old database key that no row uses any more.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from typing import Any

from fhir_server.admin.host import guarded, open_store
from fhir_server.errors import Invalid
from fhir_server.interactions import custom_params
from fhir_server.model.protect import format_key, new_secret
from fhir_server.search.indexing import index_rows
from fhir_server.settings import Settings
from fhir_server.store.protection import ENCRYPTION, SEARCH_HASH, add_key, remove_key, stored_keys
from fhir_server.store.rekey import SYSTEM, Report, reencrypt, usage
from fhir_server.store.repository import Store


def reencrypt_all(store: Store) -> Report:
    """`reencrypt` with the index rows of every search parameter, custom ones included."""
    with store.unit_of_work(SYSTEM, read_only=True) as uow:
        custom_params.sync(uow, force=True)
    fields = store.protection.fields
    return reencrypt(store, lambda resource: index_rows(resource, fields))


def status(store: Store) -> list[dict[str, Any]]:
    keys = store.protection.reload()
    with store.engine.connect() as connection:
        in_database = {purpose: {kid for kid, _ in found} for purpose, found in stored_keys(connection).items()}
    listed = []
    for purpose, ring in ((ENCRYPTION, keys.encryption), (SEARCH_HASH, keys.hashing)):
        for kid in ring.keys:
            source = "database" if kid in in_database.get(purpose, set()) else "settings"
            current = kid == ring.current
            listed.append({"purpose": purpose, "kid": kid, "source": source, "current": current})
            listed[-1]["rows"] = usage(store, purpose, kid)
    return listed


def rotate(store: Store, settings: Settings, with_hash: bool) -> list[str]:
    """New current database keys; refused for a purpose whose keys come from the settings."""
    purposes = [ENCRYPTION, SEARCH_HASH] if with_hash else [ENCRYPTION]
    configured = {ENCRYPTION: settings.encryption_keys, SEARCH_HASH: settings.search_hash_keys}
    for purpose in purposes:
        if configured[purpose]:
            name = "FHIR_ENCRYPTION_KEYS" if purpose == ENCRYPTION else "FHIR_SEARCH_HASH_KEYS"
            message = f"{purpose} keys come from {name}: prepend a new key there (keys generate), then reencrypt"
            raise Invalid(message, "protection-key-configured")
    with store.engine.begin() as connection:
        added = [add_key(connection, purpose) for purpose in purposes]
    store.protection.reload()
    return added


def _report(report: Report) -> dict[str, Any]:
    return {
        "rows": report.rows,
        "resealed": report.resealed,
        "reindexed": report.reindexed,
        "old_envelopes": report.old_envelopes,
    }


def _print(args: argparse.Namespace, value: Any, plain: str) -> int:
    print(json.dumps(value, indent=2) if args.json else plain)
    return 0


def _status(args: argparse.Namespace) -> int:
    listed = status(open_store(Settings()))
    lines = [
        f"{k['purpose']:12} {k['kid']:12} {k['source']:9} {'current' if k['current'] else 'old':8} {k['rows']} rows"
        for k in listed
    ]
    return _print(args, listed, "\n".join(lines))


def _generate(args: argparse.Namespace) -> int:
    print(format_key(args.kid, new_secret()))
    return 0


def _rotate(args: argparse.Namespace) -> int:
    settings = Settings()
    store = open_store(settings)
    added = rotate(store, settings, args.hash)
    report: dict[str, Any] = {}
    if not args.no_reencrypt:
        # Running servers read the new keys within key_refresh_seconds: until then they still
        # write with the old ones, and would not find values hashed under the new search key.
        time.sleep(settings.key_refresh_seconds if args.wait is None else args.wait)
        report = _report(reencrypt_all(store))
    return _print(args, {"added": added, **report}, f"new current keys: {', '.join(added)}\n{report}")


def _reencrypt(args: argparse.Namespace) -> int:
    report = _report(reencrypt_all(open_store(Settings())))
    return _print(args, report, json.dumps(report))


def _retire(args: argparse.Namespace) -> int:
    store = open_store(Settings())
    purpose = SEARCH_HASH if args.hash else ENCRYPTION
    keys = store.protection.reload()
    ring = keys.hashing if args.hash else keys.encryption
    if args.kid == ring.current:
        print(f"error: {args.kid} is the current {purpose} key", file=sys.stderr)
        return 2
    used = usage(store, purpose, args.kid)
    if used:
        print(f"error: {used} stored rows use {args.kid}: run `fhir-server keys reencrypt` first", file=sys.stderr)
        return 2
    with store.engine.begin() as connection:
        removed = remove_key(connection, purpose, args.kid)
    store.protection.reload()
    return _print(args, {"retired": args.kid if removed else None}, f"retired {args.kid}" if removed else "no such key")


def register(commands: Any) -> None:
    """Add the `keys` command group to the top-level parser."""
    keys = commands.add_parser("keys", help="field encryption keys").add_subparsers(dest="action", required=True)
    found = keys.add_parser("status", help="keys in use, which is current, how many rows use each")
    found.set_defaults(handler=guarded(_status))
    made = keys.add_parser("generate", help="print a new kid:base64key for the settings")
    made.add_argument("--kid", default="k" + secrets.token_hex(4))
    made.set_defaults(handler=guarded(_generate))
    rotated = keys.add_parser("rotate", help="new current database key(s), then re-encrypt")
    rotated.add_argument("--hash", action="store_true", help="also a new search-hash key")
    rotated.add_argument("--no-reencrypt", action="store_true")
    rotated.add_argument("--wait", type=float, help="seconds before re-encrypting (default FHIR_KEY_REFRESH_SECONDS)")
    rotated.set_defaults(handler=guarded(_rotate))
    keys.add_parser("reencrypt", help="move every stored value to the current keys").set_defaults(
        handler=guarded(_reencrypt)
    )
    retired = keys.add_parser("retire", help="delete an old database key no row uses")
    retired.add_argument("kid")
    retired.add_argument("--hash", action="store_true", help="a search-hash key")
    retired.set_defaults(handler=guarded(_retire))
    for parser in (found, made, rotated, retired, keys.choices["reencrypt"]):
        parser.add_argument("--json", action="store_true")
