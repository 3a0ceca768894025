"""`fhir-server clinic create`, `user create`, `client create` and `proxy link|list|unlink`:
administration on the server host (issue 4, "Command line and demo"); each prints plain text,
or JSON with `--json`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fhir_server.access import Visibility
from fhir_server.admin.host import guarded, open_store
from fhir_server.admin.resources import create_clinic, create_person
from fhir_server.auth import totp
from fhir_server.authserver import admin
from fhir_server.errors import Conflict, Invalid, NotFound
from fhir_server.interactions.read import read_in
from fhir_server.model.json import parse
from fhir_server.search.normalize import split_reference
from fhir_server.settings import Settings
from fhir_server.store.accounts import Account, Accounts
from fhir_server.store.repository import Store


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


def _account(accounts: Accounts, given: str) -> Account:
    """An account by id, or by email (anything with an `@`)."""
    found = accounts.by_email(given) if "@" in given else accounts.by_id(given) or accounts.by_email(given)
    if found is None:
        raise NotFound(f"no account {given}", "account-not-found")
    return found


def _check_dependent(store: Store, account: Account, patient: str, related_person: str | None) -> None:
    """The Patient exists; the RelatedPerson, if given, exists and is about that Patient."""
    if account.kind != "patient":
        raise Invalid(f"account {account.email} is a {account.kind} account, not a patient's", "proxy-invalid")
    if account.fhir_user == f"Patient/{patient}":
        raise Invalid(f"Patient/{patient} is the account's own record", "proxy-invalid")
    with store.unit_of_work(Visibility(unrestricted=True), read_only=True) as uow:
        read_in(uow, "Patient", patient)  # unknown: 404, deleted: 410
        if related_person is None:
            return
        content = read_in(uow, "RelatedPerson", related_person).content
    reference = str((parse(content or b"{}").get("patient") or {}).get("reference") or "")
    about = split_reference(reference)
    if about is None or about[:2] != ("Patient", patient):
        raise Invalid(f"RelatedPerson/{related_person} is not about Patient/{patient}", "proxy-invalid")


def proxy_link(args: argparse.Namespace) -> int:
    """Lets a family member's account act for a dependent (DESIGN.md section 3, proxies): the
    SMART patient picker then offers the dependent (authserver/people.py)."""
    store = open_store(Settings())
    accounts = Accounts(store.engine)
    account = _account(accounts, args.account)
    _check_dependent(store, account, args.patient, args.related_person)
    if args.patient in accounts.dependents(account.id):
        raise Conflict(f"{account.email} already acts for Patient/{args.patient}", "proxy-exists")
    accounts.add_proxy(account.id, args.patient, args.related_person)
    values = {
        "account": account.id,
        "email": account.email,
        "patient": args.patient,
        "relatedPerson": args.related_person,
    }
    return _emit(args, values, [f"{account.email} acts for Patient/{args.patient}"])


def proxy_list(args: argparse.Namespace) -> int:
    store = open_store(Settings())
    accounts = Accounts(store.engine)
    account = _account(accounts, args.account)
    dependents = accounts.dependents(account.id)
    values = {"account": account.id, "email": account.email, "patients": dependents}
    return _emit(args, values, [f"Patient/{patient}" for patient in dependents])


def proxy_unlink(args: argparse.Namespace) -> int:
    """Ends a family member's authority to act for a dependent: the picker no longer offers the
    dependent, and refresh tokens issued for that dependent stop working (authserver/token.py)."""
    accounts = Accounts(open_store(Settings()).engine)
    account = _account(accounts, args.account)
    if not accounts.remove_proxy(account.id, args.patient):
        raise NotFound(f"{account.email} does not act for Patient/{args.patient}", "proxy-not-found")
    values = {"account": account.id, "email": account.email, "patient": args.patient}
    return _emit(args, values, [f"{account.email} no longer acts for Patient/{args.patient}"])


def _register_proxy(commands: Any) -> None:
    proxy = commands.add_parser("proxy", help="family members acting for dependents")
    actions = proxy.add_subparsers(dest="action", required=True)
    link = actions.add_parser("link", help="let an account act for a dependent Patient")
    link.add_argument("--account", required=True, help="the family member's account id or email")
    link.add_argument("--patient", required=True, help="the dependent's Patient id")
    link.add_argument("--related-person", help="the RelatedPerson id saying how they are related")
    link.add_argument("--json", action="store_true")
    link.set_defaults(handler=guarded(proxy_link))
    listing = actions.add_parser("list", help="the dependents an account acts for")
    listing.add_argument("--account", required=True, help="account id or email")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=guarded(proxy_list))
    unlink = actions.add_parser("unlink", help="end an account's authority to act for a dependent")
    unlink.add_argument("--account", required=True, help="the family member's account id or email")
    unlink.add_argument("--patient", required=True, help="the dependent's Patient id")
    unlink.add_argument("--json", action="store_true")
    unlink.set_defaults(handler=guarded(proxy_unlink))


def register(commands: Any) -> None:
    """Add the `clinic`, `user`, `client` and `proxy` command groups to the top-level parser."""
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

    _register_proxy(commands)
