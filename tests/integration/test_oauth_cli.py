"""`fhir-server clinic create`, `user create` and `client create` (issue 4, command line): JSON
output, the records they make, and a backend service registered from the command line getting a
token with its own key."""

from __future__ import annotations

import json

import pytest

from fhir_server.auth import totp
from fhir_server.cli import main
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import accounts, assertion, client_credentials, key_pair, unique_email


@pytest.fixture()
def cli(monkeypatch, database_url, capsys):
    monkeypatch.setenv("FHIR_DATABASE_URL", database_url)

    def run(*argv: str) -> dict:
        capsys.readouterr()
        assert main([*argv, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    return run


def test_clinic_create(cli, client):
    made = cli("clinic", "create", "--name", "Skin & Co")
    organization = client.get(f"/fhir/Organization/{made['id']}", headers=FHIR_JSON).json()
    assert organization["name"] == "Skin & Co"
    assert organization["meta"]["tag"][0]["code"] == "clinic"


def test_user_create_with_a_new_practitioner_and_totp(cli, client, store, tmp_path):
    clinic = cli("clinic", "create", "--name", "Physio")["id"]
    password_file = tmp_path / "password"
    password_file.write_text("a long enough password\n")
    email = unique_email("Physio")
    made = cli(
        "user",
        "create",
        "--email",
        email,
        "--password-file",
        str(password_file),
        "--kind",
        "clinic-member",
        "--clinic",
        clinic,
        "--role",
        "practitioner",
        "--given",
        "Ann",
        "--family",
        "Smith",
        "--totp",
    )
    assert made["fhirUser"].startswith("Practitioner/") and made["otpauth_uri"].startswith("otpauth://totp/")
    practitioner = client.get(f"/fhir/{made['fhirUser']}", headers=FHIR_JSON).json()
    assert practitioner["name"][0]["family"] == "Smith"
    account = accounts(store).by_email(email)
    assert account.id == made["id"] and account.totp_secret == made["totp_secret"]
    assert totp.verify(made["totp_secret"], totp.code_at(made["totp_secret"], totp.current_step())) is not None
    assert [(m.clinic_id, m.role) for m in accounts(store).memberships(account.id)] == [(clinic, "practitioner")]


def test_user_create_refuses_bad_input(monkeypatch, database_url, capsys):
    monkeypatch.setenv("FHIR_DATABASE_URL", database_url)
    assert main(["user", "create", "--email", unique_email(), "--password", "short", "--kind", "patient"]) == 2
    assert "password" in capsys.readouterr().err
    args = ["user", "create", "--email", unique_email(), "--password", "long enough!", "--kind", "clinic-member"]
    assert main(args) == 2


def test_client_create_kinds(cli, client, store, tmp_path):
    public = cli(
        "client",
        "create",
        "--name",
        "App",
        "--scope",
        "patient/*.rs openid",
        "--redirect-uri",
        "https://app.example/cb",
        "--public",
    )
    assert public["kind"] == "public" and "client_secret" not in public
    secret = cli(
        "client",
        "create",
        "--name",
        "Server",
        "--scope",
        "user/*.rs",
        "--redirect-uri",
        "https://srv.example/cb",
        "--secret",
    )
    assert secret["kind"] == "confidential-symmetric" and len(secret["client_secret"]) >= 40
    by_url = cli(
        "client",
        "create",
        "--name",
        "Keys",
        "--clinic",
        "c-9",
        "--scope",
        "system/*.rs",
        "--jwks-url",
        "https://keys.example/jwks.json",
    )
    assert by_url["kind"] == "backend-service"
    private, public_jwk = key_pair("ES384")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk]}))
    backend = cli(
        "client", "create", "--name", "EHR", "--clinic", "c-9", "--scope", "system/*.rs", "--jwks-file", str(jwks_file)
    )
    client_id = backend["client_id"]
    answer = client_credentials(client, client_id, assertion(private, "ES384", client_id))
    assert answer.status_code == 200, answer.text


def test_client_create_refuses_private_keys_and_missing_clinic(monkeypatch, database_url, tmp_path, capsys):
    monkeypatch.setenv("FHIR_DATABASE_URL", database_url)
    private, _ = key_pair("RS384")
    jwks_file = tmp_path / "private.json"
    jwks_file.write_text(json.dumps({"keys": [private.as_dict(private=True)]}))
    args = ["client", "create", "--name", "X", "--clinic", "c", "--scope", "system/*.rs", "--jwks-file"]
    assert main([*args, str(jwks_file)]) == 2
    assert "public" in capsys.readouterr().err
    _, public_jwk = key_pair("RS384")
    jwks_file.write_text(json.dumps({"keys": [public_jwk]}))
    assert main(["client", "create", "--name", "X", "--scope", "system/*.rs", "--jwks-file", str(jwks_file)]) == 2


def test_serve_seeds_the_demo_only_on_a_database_without_accounts(tmp_path, capsys):
    from fhir_server.cli import _seed_demo
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    upgrade(make_engine(url))
    settings = Settings(database_url=url)
    _seed_demo(make_engine(url), settings, "http://127.0.0.1:8080")
    printed = capsys.readouterr().out
    assert "clinician@demo.example" in printed and "patient@demo.example" in printed
    assert "http://127.0.0.1:8080/demo/" in printed
    _seed_demo(make_engine(url), settings, "http://127.0.0.1:8080")
    assert capsys.readouterr().out == ""
