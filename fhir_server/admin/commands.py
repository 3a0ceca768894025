"""`fhir-server clinic create`, `user create` and `client create`: administration on the server
host (issue 4, "Command line and demo"); each prints plain text, or JSON with `--json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fhir_server.admin.host import guarded, open_store
from fhir_server.admin.resources import create_clinic, create_person
from fhir_server.auth import totp
from fhir_server.authserver import admin
from fhir_server.errors import Invalid
from fhir_server.settings import Settings
from fhir_server.store.accounts import Accounts


def _emit(args: argparse.Namespace, values: dict[str, Any], plain: list[str]) -> int:
    if args.json:
        print(json.dumps({k: v for k, v in values.items() if v is not None}, indent=2))
    else:
        print("\n".join(plain))
    return 0


def clinic_create(args: argparse.Namespace) -> int:
    settings = Settings()
    clinic_id = create_clinic(open_store(settings), settings, args.name)
    return _emit(args, {"id": clinic_id, "name": args.name}, [clinic_id])


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        return Path(args.password_file).read_text(encoding="utf-8").rstrip("\r\n")
    if not args.password:
        raise Invalid("give --password or --password-file", "account-invalid")
    return str(args.password)


def user_create(args: argparse.Namespace) -> int:
    settings = Settings()
    store = open_store(settings)
    password = _password(args)
    fhir_user = args.fhir_user
    if fhir_user is None and (args.given or args.family):
        resource_type = "Patient" if args.kind == "patient" else "Practitioner"
        created = create_person(store, settings, resource_type, args.given, args.family, clinic=args.clinic)
        fhir_user = f"{resource_type}/{created}"
    account, secret = admin.create_account(
        Accounts(store.engine),
        email=args.email,
        password=password,
        kind=args.kind,
        fhir_user=fhir_user,
        clinic=args.clinic,
        role=args.role,
        with_totp=args.totp,
    )
    uri = totp.provisioning_uri(secret, account.email) if secret else None
    values = {
        "id": account.id,
        "email": account.email,
        "kind": account.kind,
        "fhirUser": fhir_user,
        "clinic": args.clinic,
        "role": args.role,
        "totp_secret": secret,
        "otpauth_uri": uri,
    }
    plain = [account.id] + ([f"totp secret: {secret}", f"otpauth uri: {uri}"] if secret else [])
    return _emit(args, values, plain)


def client_create(args: argparse.Namespace) -> int:
    settings = Settings()
    store = open_store(settings)
    jwks = json.loads(Path(args.jwks_file).read_text(encoding="utf-8")) if args.jwks_file else None
    asymmetric = jwks is not None or args.jwks_url is not None
    if asymmetric:
        kind = "confidential-asymmetric" if args.redirect_uri else "backend-service"
    elif args.secret:
        kind = "confidential-symmetric"
    elif args.public:
        kind = "public"
    else:
        raise Invalid("choose --jwks-file, --jwks-url, --public or --secret", "client-invalid")
    client, secret = admin.create_client(
        Accounts(store.engine),
        name=args.name,
        kind=kind,
        scopes=args.scope.split(),
        redirect_uris=args.redirect_uri or [],
        jwks=jwks,
        jwks_uri=args.jwks_url,
        clinic=args.clinic,
    )
    values = {
        "client_id": client.client_id,
        "client_secret": secret,
        "kind": client.kind,
        "scope": " ".join(client.scopes),
        "redirect_uris": list(client.redirect_uris) or None,
        "clinic": client.clinic_id,
    }
    plain = [client.client_id] + ([f"client secret: {secret}"] if secret else [])
    return _emit(args, values, plain)


def register(commands: Any) -> None:
    """Add the `clinic`, `user` and `client` command groups to the top-level parser."""
    clinic = commands.add_parser("clinic", help="manage clinics").add_subparsers(dest="action", required=True)
    make = clinic.add_parser("create", help="create a clinic (an Organization); prints its id")
    make.add_argument("--name", required=True)
    make.add_argument("--json", action="store_true")
    make.set_defaults(handler=guarded(clinic_create))

    user = commands.add_parser("user", help="manage accounts").add_subparsers(dest="action", required=True)
    make = user.add_parser("create", help="create an account; prints its id")
    make.add_argument("--email", required=True)
    secret = make.add_mutually_exclusive_group(required=True)
    secret.add_argument("--password")
    secret.add_argument("--password-file")
    make.add_argument("--kind", required=True, choices=admin.ACCOUNT_KINDS)
    make.add_argument("--clinic")
    make.add_argument("--role", choices=admin.ROLES)
    make.add_argument("--fhir-user", help="e.g. Patient/123 or Practitioner/9")
    make.add_argument("--given")
    make.add_argument("--family")
    make.add_argument("--totp", action="store_true", help="enrol a TOTP second factor (always for admins)")
    make.add_argument("--json", action="store_true")
    make.set_defaults(handler=guarded(user_create))

    client = commands.add_parser("client", help="manage OAuth clients").add_subparsers(dest="action", required=True)
    make = client.add_parser("create", help="register a SMART client; prints its client_id")
    make.add_argument("--name", required=True)
    make.add_argument("--clinic")
    make.add_argument("--scope", required=True, help='allowed scopes, e.g. "system/*.rs"')
    keys = make.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-file")
    keys.add_argument("--jwks-url")
    keys.add_argument("--public", action="store_true")
    keys.add_argument("--secret", action="store_true")
    make.add_argument("--redirect-uri", action="append")
    make.add_argument("--json", action="store_true")
    make.set_defaults(handler=guarded(client_create))
