"""The KV2 reference grammar: parse, format, authority check, selection and output text."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv2render import authority, payload, refs
from kv2render.authority import check_authority
from kv2render.errors import (
    ConfigError,
    Kv2RenderError,
    MissingKeyError,
    ReferenceSyntaxError,
    RenderError,
)
from kv2render.payload import value_to_text
from kv2render.refs import SecretLocation, SecretRef, format_ref, parse_ref

FUZZ = settings(
    max_examples=int(os.environ.get("KV2RENDER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def rejected(text: str, *, allow_path_form: bool = False) -> str:
    with pytest.raises(ReferenceSyntaxError) as info:
        parse_ref(text, where="template[0].ref", allow_path_form=allow_path_form)
    return str(info.value)


# -- accepted forms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "vault+kv2:///secret/data/app/db#password",
            SecretRef("secret", "app/db", key="password"),
        ),
        ("vault+kv2:///secret/app/db", SecretRef("secret", "app/db")),
        # the exact spellings of KV2-AC-001, KV2-AC-003, KV2-AC-004 and KV2-AC-006
        ("vault+kv2:///secret/app/db#password", SecretRef("secret", "app/db", key="password")),
        ("vault+kv2:///kv/app/db", SecretRef("kv", "app/db")),
        ("vault+kv2:///secret/app/db?version=3", SecretRef("secret", "app/db", 3)),
        (
            "https://vault.example:8200/v1/secret/data/app/db?version=2#password",
            SecretRef(
                "secret", "app/db", 2, key="password", host="vault.example:8200", form="https"
            ),
        ),
        (
            "vault+kv2:///team/kv/data/app/db",
            SecretRef("team/kv", "app/db"),
        ),
        (
            "vault+kv2://Vault.Example.COM:8200/secret/data/app?version=7#/a/b~1c/0",
            SecretRef("secret", "app", 7, pointer="/a/b~1c/0", host="vault.example.com:8200"),
        ),
        ("vault+kv2://[::1]:8200/secret/x", SecretRef("secret", "x", host="[::1]:8200")),
        # a mount named 'data': the marker is the first 'data' after the first segment
        ("vault+kv2:///data/data/x", SecretRef("data", "x")),
        ("vault+kv2:///data/x", SecretRef("data", "x")),
        # the path keeps later 'data' segments
        ("vault+kv2:///kv/data/data/data", SecretRef("kv", "data/data")),
        ("vault+kv2:///secret/data/a/data/b", SecretRef("secret", "a/data/b")),
        ("vault+kv2:///kv/data/app?version=007", SecretRef("kv", "app", 7)),
        ("VAULT+KV2:///kv/data/app", SecretRef("kv", "app")),
        (
            "https://eu-west-3.okms.ovh.net/api/0f3c-okms/v1/secret/data/app/db?version=2#password",
            SecretRef(
                "secret",
                "app/db",
                2,
                key="password",
                host="eu-west-3.okms.ovh.net",
                prefix="/api/0f3c-okms",
                form="https",
            ),
        ),
        (
            "https://vault.example:8200/v1/team/kv/data/app",
            SecretRef("team/kv", "app", host="vault.example:8200", form="https"),
        ),
        (
            "http://127.0.0.1:8200/v1/secret/data/x#/k",
            SecretRef(
                "secret", "x", pointer="/k", host="127.0.0.1:8200", form="https", scheme="http"
            ),
        ),
    ],
)
def test_accepted_url_forms(text: str, expected: SecretRef) -> None:
    """KV2-AC-001, KV2-AC-002, KV2-AC-003, KV2-AC-004, KV2-AC-006, KV2-AC-007, KV2-AC-023,
    KV2-INV-004, KV2-INV-009: each spelling parses to one ref (scheme and host in any case,
    `http://` kept, leading zeros in the version dropped)."""
    assert parse_ref(text) == expected
    assert parse_ref(text, allow_path_form=True) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("secret/data/app/db", SecretRef("secret", "app/db", form="path")),
        ("secret/data/app/db?version=3", SecretRef("secret", "app/db", 3, form="path")),
        ("team/kv/data/app", SecretRef("team/kv", "app", form="path")),
        ("secret/app/db", SecretRef("secret", "app/db", form="path")),  # legacy mount/path
        ("projects/data/x", SecretRef("projects", "x", form="path")),  # a mount named projects
        ("my%3Amount/data/x", SecretRef("my:mount", "x", form="path")),
    ],
)
def test_path_form_in_templates(text: str, expected: SecretRef) -> None:
    """KV2-AC-008: consul-template's path form is accepted only where templates allow it."""
    assert parse_ref(text, allow_path_form=True) == expected
    assert "only in templates" in rejected(text)


def test_percent_decoding_happens_exactly_once() -> None:
    """KV2-AC-014, KV2-INV-005: decoded once; %20/%23/%3F are path characters."""
    assert parse_ref("vault+kv2:///secret/app%2520x").path == "app%20x"
    ref = parse_ref("vault+kv2:///secret/data/a%252Fb/c%20d%23e%3Ff")
    assert ref.path == "a%2Fb/c d#e?f"
    assert parse_ref("vault+kv2:///se%63ret/%64ata/x") == SecretRef("secret", "x")
    assert parse_ref("vault+kv2:///kv/data/x#p%C3%A4ss").key == "päss"
    assert parse_ref("vault+kv2:///kv/data/x#/a%20b").pointer == "/a b"
    # a fragment's '?' is part of the key; a key with '/' not first is still a key
    assert parse_ref("vault+kv2:///kv/data/x#a?b").key == "a?b"
    assert parse_ref("vault+kv2:///kv/data/x#a/b").key == "a/b"
    assert parse_ref("vault+kv2:///kv/data/x#%2Fa").key == "/a"


# -- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        (" vault+kv2:///kv/data/x", "whitespace"),
        ("vault+kv2:///kv/data/x\n", "whitespace"),
        ("vault+kv2:///kv/da\tta/x", "control character"),
        ("vault://secret/data/x", "bare vault://"),
        ("VAULT://secret/x", "bare vault://"),
        ("https://myvault.vault.azure.net/secrets/db", "Azure Key Vault"),
        ("https://myvault.vault.azure.net/secrets/db/0123abcd", "Azure Key Vault"),
        ("https://MyVault.Vault.Azure.Net/v1/secret/data/x", "Azure Key Vault"),
        ("https://hsm.managedhsm.azure.net/keys/k", "Azure Key Vault"),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf", "AWS ARN"),
        ("arn:aws:ssm:eu-west-1:123456789012:parameter/db", "AWS ARN"),
        ("projects/p/secrets/db/versions/3", "GCP Secret Manager"),
        ("projects/p/secrets/db", "GCP Secret Manager"),
        ("projects/p/locations/europe-west1/secrets/db", "GCP Secret Manager"),
        ("https://vault.example/secret/data/x", "/v1/ and /data/"),
        ("https://vault.example/v1/secret/x", "/data/ marker"),
        ("https://vault.example/v1/secret/metadata/x", "/data/ marker"),
        ("https://vault.example", "no mount"),
        ("https:///v1/secret/data/x", "needs a host"),
        ("https:vault.example/v1/secret/data/x", "starts with https://"),
        ("vault+kv2:/kv/data/x", "starts with vault+kv2://"),
        ("vault+kv2://", "no mount"),
        ("vault+kv2:///", "no mount"),
        ("vault+kv2:///kv", "a mount and a secret path"),
        ("vault+kv2:///kv/data", "no secret path after"),
        ("vault+kv2:///kv/data/", "empty path segment"),
        ("vault+kv2:///kv//data/x", "empty path segment"),
        ("vault+kv2:///kv/data/a/./b", "'.' path segments"),
        ("vault+kv2:///kv/data/a/../b", "'..' path segments"),
        ("vault+kv2:///kv/data/a/%2e%2E/b", "'..' path segments"),
        ("vault+kv2:///kv/data/a%2Fb", "encoded '/'"),
        ("vault+kv2:///kv/data/a%zz", "bad percent-encoding"),
        ("vault+kv2:///kv/data/a%", "bad percent-encoding"),
        ("vault+kv2:///kv/data/a%FF", "invalid UTF-8"),
        ("vault+kv2:///kv/data/a%00", "control character"),
        ("vault+kv2:///kv/data/x?version=0", "positive integer"),
        ("vault+kv2:///kv/data/x?version=-1", "positive integer"),
        ("vault+kv2:///kv/data/x?version=1.5", "positive integer"),
        ("vault+kv2:///kv/data/x?version=x", "positive integer"),
        ("vault+kv2:///kv/data/x?version=", "positive integer"),
        ("vault+kv2:///kv/data/x?version", "positive integer"),
        ("vault+kv2:///kv/data/x?version=" + "9" * 40, "positive integer"),
        ("vault+kv2:///kv/data/x?version=1&version=2", "more than once"),
        ("vault+kv2:///kv/data/x?list=true", "unknown query parameter 'list'"),
        ("vault+kv2:///kv/data/x?foo=1", "unknown query parameter 'foo'"),
        ("vault+kv2:///kv/data/x?", "empty query"),
        ("vault+kv2:///kv/data/x#", "empty fragment"),
        ("vault+kv2:///kv/data/x#/a~2b", "'~' must be followed by 0 or 1"),
        ("vault+kv2://host:0/kv/data/x", "bad port"),
        ("vault+kv2://host:70000/kv/data/x", "bad port"),
        ("vault+kv2://host:/kv/data/x", "bad port"),
        ("vault+kv2://ho_st!/kv/data/x", "bad host"),
        ("vault+kv2://[::1/kv/data/x", "bad IPv6"),
        ("kv2://vault/secret/x", "unknown scheme 'kv2'"),
        ("secretsmanager://db", "unknown scheme"),
        ("file:///etc/passwd", "unknown scheme 'file'"),
        ("secret/data/x", "only in templates"),
    ],
)
def test_rejected_with_reason_and_accepted_forms(text: str, reason: str) -> None:
    """KV2-FC-001, KV2-FC-002, KV2-FC-003, KV2-FC-004, KV2-FC-005, KV2-FC-006, KV2-FC-007,
    KV2-AC-009, KV2-AC-010, KV2-AC-011, KV2-AC-012, KV2-AC-013, KV2-AC-015, KV2-INV-010: each
    rejection says why and lists the accepted forms."""
    message = rejected(text)
    assert reason in message
    assert message.startswith("template[0].ref: ")
    assert "vault+kv2://[HOST[:PORT]]/MOUNT/PATH" in message
    assert "https://HOST[:PORT][/PREFIX]/v1/MOUNT/data/PATH" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("/secret/data/x", "must not start with '/'"),
        ("secret/data/x#password", "takes no #fragment"),
        ("secret", "a mount and a secret path"),
        ("projects/p/secrets/db", "GCP Secret Manager"),
        ("a:b/data/x", "unknown scheme 'a'"),
        ("secret/data/../x", "'..' path segments"),
    ],
)
def test_path_form_rejections(text: str, reason: str) -> None:
    """KV2-AC-008, KV2-AC-025, KV2-FC-005, KV2-FC-010: the template path form has its own,
    named, rejections (no leading '/', no #fragment)."""
    message = rejected(text, allow_path_form=True)
    assert reason in message
    assert "MOUNT/data/PATH[?version=N]" in message


def test_azure_message_names_azure_key_vault() -> None:
    """KV2-AC-010, KV2-FC-002: the connector's Azure Key Vault form never routes to KV2."""
    message = rejected("https://prod-kv.vault.azure.net/secrets/pg-password/abc")
    assert "Azure Key Vault" in message


def test_userinfo_is_refused_and_masked() -> None:
    """KV2-AC-017, KV2-AC-024, KV2-INV-006, KV2-INV-010, KV2-INV-001: userinfo is refused
    and never echoed (masked as ***@host)."""
    message = rejected("vault+kv2://admin:S3NTINEL-pw@vault.example/kv/data/x")
    assert "user information" in message
    assert "S3NTINEL" not in message
    assert "***@vault.example" in message
    message = rejected("https://admin:S3NTINEL-pw@vault.example/v1/kv/data/x")
    assert "S3NTINEL" not in message


def test_long_input_is_truncated_in_messages() -> None:
    """KV2-AC-024, KV2-INV-010: a huge reference is echoed to about 200 characters."""
    message = rejected("vault+kv2:///kv/data/" + "x" * 5000 + "/../y")
    assert len(message) < 700
    assert "..." in message


def test_non_string_is_a_reference_syntax_error() -> None:
    """KV2-INV-002: a YAML number where a reference belongs is a config error, not TypeError."""
    with pytest.raises(ReferenceSyntaxError, match="must be a string, got int"):
        parse_ref(5, where="template[0].ref")  # type: ignore[arg-type]


def test_reference_errors_are_config_errors_with_exit_2() -> None:
    """KV2-INV-002: a bad reference is a configuration error (exit code 2)."""
    with pytest.raises(ConfigError) as info:
        parse_ref("vault://x")
    assert info.value.exit_code == 2


# -- formatting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("vault+kv2:///kv/app", "vault+kv2:///kv/data/app"),
        (
            "VAULT+KV2://HOST:8200/kv/app?version=03#k",
            "vault+kv2://host:8200/kv/data/app?version=3#k",
        ),
        ("vault+kv2:///kv/data/a%252Fb", "vault+kv2:///kv/data/a%252Fb"),
        ("vault+kv2:///kv/data/a b#x y", "vault+kv2:///kv/data/a%20b#x%20y"),
        ("vault+kv2:///kv/data/x#%2Fk", "vault+kv2:///kv/data/x#%2Fk"),
        ("vault+kv2:///kv/data/x#a/b", "vault+kv2:///kv/data/x#a%2Fb"),
        ("vault+kv2:///kv/data/x#/a~1b/0", "vault+kv2:///kv/data/x#/a~1b/0"),
        ("https://H/api/o/v1/kv/data/x", "https://h/api/o/v1/kv/data/x"),
        ("http://h:80/v1/kv/data/x", "http://h:80/v1/kv/data/x"),
    ],
)
def test_format_is_canonical(text: str, canonical: str) -> None:
    """KV2-INV-003, KV2-INV-009, KV2-AC-023: format_ref writes one canonical text per
    reference, in its own form (lower-case scheme and host, no leading zeros)."""
    ref = parse_ref(text)
    assert format_ref(ref) == canonical
    assert str(ref) == canonical
    assert parse_ref(canonical) == ref


def test_path_form_formats_in_path_form() -> None:
    """KV2-INV-003: a template path reference keeps its form, with the data marker written."""
    ref = parse_ref("secret/app/db?version=2", allow_path_form=True)
    assert format_ref(ref) == "secret/data/app/db?version=2"
    assert parse_ref(format_ref(ref), allow_path_form=True) == ref
    # ':' is encoded so a mount with a colon does not read as a URL scheme
    ref = parse_ref("a%3Ab/data/x", allow_path_form=True)
    assert format_ref(ref) == "a%3Ab/data/x"


def test_path_form_with_a_selection_formats_as_vault_kv2() -> None:
    """A hand-built path-form ref with a key cannot be written in path form: vault+kv2 instead."""
    ref = SecretRef("kv", "x", key="k", form="path")
    assert format_ref(ref) == "vault+kv2:///kv/data/x#k"


def test_location_is_the_read_identity() -> None:
    """KV2-AC-004: `?version=N` pins; references differing only in key or spelling share one
    read location."""
    assert str(parse_ref("vault+kv2:///secret/app/db?version=3").location) == (
        "secret/app/db?version=3"
    )
    a = parse_ref("vault+kv2:///kv/data/app#user")
    b = parse_ref("https://h/v1/kv/data/app#password")
    c = parse_ref("kv/app", allow_path_form=True)
    assert a.location == b.location == c.location == SecretLocation("kv", "app")
    assert str(parse_ref("vault+kv2:///kv/data/app?version=4").location) == "kv/app?version=4"


# -- authority ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("vault+kv2:///kv/data/x", "https://anything:8200"),
        ("vault+kv2://vault.example/kv/data/x", "https://vault.example"),
        ("vault+kv2://VAULT.example:8200/kv/data/x", "https://vault.example:8200/"),
        ("vault+kv2://VAULT.example:443/kv/data/x", "https://vault.example"),
        ("vault+kv2://vault.example/kv/data/x", "https://vault.example/api/okms"),
        ("vault+kv2://vault.example/kv/data/x", "http://vault.example:80"),
        ("https://vault.example/v1/kv/data/x", "https://vault.example:443"),
        ("https://vault.example:443/v1/kv/data/x", "https://Vault.Example"),
        ("http://127.0.0.1:8200/v1/kv/data/x", "http://127.0.0.1:8200"),
        ("http://localhost/v1/kv/data/x", "http://localhost:80"),
        ("https://okms.example/api/abc/v1/kv/data/x", "https://okms.example/api/abc/"),
        ("https://[::1]:8200/v1/kv/data/x", "https://[::1]:8200"),
        ("kv/data/x", "https://vault.example"),
    ],
)
def test_authority_matches(text: str, address: str) -> None:
    """KV2-AC-016, KV2-INV-006: a named host matching vault.address is accepted."""
    check_authority(parse_ref(text, allow_path_form=True), address, where="template[0]")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("vault+kv2://other.example/kv/data/x", "https://vault.example"),
        ("vault+kv2://vault.example:8200/kv/data/x", "https://vault.example"),
        ("vault+kv2://vault.example/kv/data/x", "https://vault.example:8200"),  # 443 vs 8200
        ("vault+kv2://vault.example/kv/data/x", "http://vault.example:443"),  # 80 vs 443
        ("https://vault.example/v1/kv/data/x", "https://vault.example:8200"),
        ("http://vault.example/v1/kv/data/x", "https://vault.example"),  # port 80 vs 443
        ("https://okms.example/api/abc/v1/kv/data/x", "https://okms.example/api/xyz"),
        ("https://okms.example/v1/kv/data/x", "https://okms.example/api/abc"),
    ],
)
def test_authority_mismatch_is_a_config_error(text: str, address: str) -> None:
    """KV2-AC-016, KV2-INV-006: naming another server is a config error naming both."""
    with pytest.raises(ConfigError) as info:
        check_authority(parse_ref(text), address, where="template[2].contents")
    message = str(info.value)
    assert message.startswith("template[2].contents: ")
    assert "vault.address" in message
    assert "leave the host out" in message


def test_authority_hint_for_a_missing_third_slash() -> None:
    """`vault+kv2://secret/data/x` reads 'secret' as a host: the hint says three slashes."""
    ref = parse_ref("vault+kv2://secret/data/x")
    with pytest.raises(ConfigError, match="three slashes"):
        check_authority(ref, "https://vault.example")


def test_authority_with_unusable_address() -> None:
    """A named host cannot be checked against an address that is not an http(s) URL."""
    ref = parse_ref("vault+kv2://vault.example/kv/data/x")
    for address in (
        "vault.example:8200",
        "ftp://vault.example",
        "ftp://vault.example:21",
        "https://vault.example:99999",
    ):
        with pytest.raises(ConfigError, match="vault.address"):
            check_authority(ref, address)


def test_authority_error_does_not_echo_address_userinfo() -> None:
    """KV2-INV-001: credentials in an address never reach the message."""
    ref = parse_ref("vault+kv2://other.example/kv/data/x")
    with pytest.raises(ConfigError) as info:
        check_authority(ref, "https://u:S3NTINEL@vault.example")
    assert "S3NTINEL" not in str(info.value)


# -- selection and output text --------------------------------------------------------------

DATA: dict[str, Any] = {
    "password": "S3NTINEL-pw",
    "port": 5432,
    "tls": True,
    "nested": {"a/b": {"c~d": ["zero", {"x": None}]}, "": "empty-key"},
    "list": [1, "x"],
}


def test_select_key_pointer_and_whole() -> None:
    """KV2-AC-005, KV2-AC-019, KV2-INV-007: #key, #/json/pointer, or the whole object."""
    pair = {"username": "u", "password": "p"}
    assert parse_ref("vault+kv2:///kv/data/x#password").select(pair) == "p"
    assert SecretRef("kv", "x", pointer="/a/b~1c/0").select({"a": {"b/c": ["v"]}}) == "v"
    assert parse_ref("vault+kv2:///kv/data/x#password").select(DATA) == "S3NTINEL-pw"
    assert parse_ref("vault+kv2:///kv/data/x#port").select(DATA) == 5432
    assert parse_ref("vault+kv2:///kv/data/x").select(DATA) is DATA
    ptr = parse_ref("vault+kv2:///kv/data/x#/nested/a~1b/c~0d/1/x")
    assert ptr.select(DATA) is None
    assert parse_ref("vault+kv2:///kv/data/x#/nested/a~1b/c~0d/0").select(DATA) == "zero"
    assert parse_ref("vault+kv2:///kv/data/x#/nested/").select(DATA) == "empty-key"
    assert parse_ref("vault+kv2:///kv/data/x#/list").select(DATA) == [1, "x"]
    # '~01' is '~1' literally, not '/': the escapes are undone in RFC order
    assert SecretRef("kv", "x", pointer="/~01").select({"~1": "t", "/": "f"}) == "t"


@pytest.mark.parametrize(
    ("fragment", "names"),
    [
        ("#pasword", "key 'pasword'"),
        ("#/nope", "'/nope'"),
        ("#/password/x", "is a string"),
        ("#/port/0", "is a number"),
        ("#/tls/0", "is a boolean"),
        ("#/list/2", "array of 2"),
        ("#/list/01", "'/list/01'"),
        ("#/list/-", "'/list/-'"),
        ("#/nested/a~1b/c~0d/1/x/y", "is null"),
    ],
)
def test_missing_key_names_the_selector_never_the_value(fragment: str, names: str) -> None:
    """KV2-AC-021, KV2-FC-008, KV2-INV-001: a missing key names key and location, no value."""
    ref = parse_ref("vault+kv2:///kv/data/app/db?version=3" + fragment)
    with pytest.raises(MissingKeyError) as info:
        ref.select(DATA)
    message = str(info.value)
    assert names in message
    assert "kv/app/db?version=3" in message
    assert "S3NTINEL" not in message
    assert "zero" not in message and "5432" not in message
    assert isinstance(info.value, RenderError)


def test_key_on_a_non_object() -> None:
    """A key selection on data that is not an object is a missing key, not a TypeError."""
    with pytest.raises(MissingKeyError):
        SecretRef("kv", "x", key="k").select(["k"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("S3NTINEL & <raw>\n", "S3NTINEL & <raw>\n"),
        ("", ""),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (5432, "5432"),
        (1.5, "1.5"),
        ({"a": True, "b": [1, "x"]}, '{"a":true,"b":[1,"x"]}'),
        (["é", "ü"], '["é","ü"]'),
    ],
)
def test_value_to_text(value: Any, text: str) -> None:
    """KV2-AC-020, KV2-INV-008: a string is written raw, anything else as compact JSON."""
    assert value_to_text(value) == text


def test_value_to_text_refuses_non_json() -> None:
    """KV2-AC-026, KV2-FC-011: NaN (Python's json accepts it from a server) is a render
    error, never the text 'NaN'."""
    for number in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(RenderError):
            value_to_text(number)
    with pytest.raises(RenderError):
        value_to_text({"a": object()})


def test_refs_keeps_its_python_contract() -> None:
    """The fixed contract of ``kv2render.refs`` (docs/spec, "Python contracts") names
    check_authority and value_to_text; they live in authority.py and payload.py, below refs,
    and refs re-exports the same objects (is_loopback_host too, for its older callers)."""
    assert refs.check_authority is authority.check_authority
    assert refs.value_to_text is payload.value_to_text
    assert refs.is_loopback_host is authority.is_loopback_host
    assert {"check_authority", "value_to_text", "is_loopback_host"} <= set(refs.__all__)


# -- properties -----------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "vault+kv2://",
        "vault+kv2:///",
        "https://",
        "http://",
        "vault://",
        "arn:",
        "projects/",
        "/",
        "//",
        "data",
        "v1",
        "/data/",
        "/v1/",
        "?",
        "#",
        "#/",
        "&",
        "=",
        "version=",
        "version=1",
        "%",
        "%2F",
        "%2f",
        "%25",
        "%2E",
        "%00",
        "%C3",
        "%FF",
        ".",
        "..",
        ":",
        "@",
        "[",
        "]",
        "::1",
        "~",
        "~0",
        "~1",
        " ",
        "\n",
        "\x00",
        "\ud800",
        "é",
        "host",
        "h.example",
        ":8200",
        ".vault.azure.net",
        "secret",
        "0",
        "9" * 25,
    ]
)
_STRUCTURED = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=14).map("".join)


@FUZZ
@given(text=st.one_of(st.text(), _STRUCTURED), allow_path_form=st.booleans())
def test_parse_never_raises_anything_but_a_reference_error(
    text: str, allow_path_form: bool
) -> None:
    """KV2-AC-018, KV2-INV-002: routing is total; the only failure is ReferenceSyntaxError."""
    try:
        ref = parse_ref(text, allow_path_form=allow_path_form)
    except ReferenceSyntaxError as exc:
        assert exc.exit_code == 2
        assert "accepted forms" in str(exc)
        return
    except Kv2RenderError as exc:  # pragma: no cover - the assertion message is the point
        raise AssertionError(f"wrong error class {type(exc).__name__}") from exc
    # whatever parsed re-parses identically from its canonical text (determinism)
    assert parse_ref(format_ref(ref), allow_path_form=allow_path_form) == ref


def _is_clean(text: str) -> bool:
    return all(
        not (ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF) for c in text
    )


_SEGMENT = st.one_of(
    st.sampled_from(["data", "v1", "secret", "kv", "a b", "%2F", "x?y#z", "é", ":", "~"]),
    st.text(min_size=1, max_size=8),
).filter(lambda s: _is_clean(s) and "/" not in s and s not in (".", ".."))


@st.composite
def _mount(draw: st.DrawFn) -> str:
    segs = draw(st.lists(_SEGMENT, min_size=1, max_size=3))
    # only the first mount segment may be 'data' (the first later 'data' is the marker)
    return "/".join([segs[0]] + [s for s in segs[1:] if s != "data"])


_PATH = st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join)
_TEXT = st.text(min_size=1, max_size=10).filter(_is_clean)
_POINTER = st.lists(st.text(max_size=6).filter(_is_clean), min_size=1, max_size=3).map(
    lambda tokens: "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)
)
_HOST = st.builds(
    lambda name, port: name if port is None else f"{name}:{port}",
    st.sampled_from(["vault.example", "127.0.0.1", "[::1]", "h-1.example.com", "okms"]),
    st.one_of(st.none(), st.integers(1, 65535)),
)
_PREFIX = st.lists(_SEGMENT.filter(lambda s: s != "v1"), max_size=2).map(
    lambda segs: "".join("/" + s for s in segs)
)


@st.composite
def valid_refs(draw: st.DrawFn) -> SecretRef:
    form = draw(st.sampled_from(["vault+kv2", "https", "path"]))
    mount = draw(_mount())
    path = draw(_PATH)
    version = draw(st.one_of(st.none(), st.integers(1, 10**15)))
    if form == "path":
        return SecretRef(mount, path, version, form="path")
    selection = draw(st.sampled_from(["none", "key", "pointer"]))
    key = draw(_TEXT) if selection == "key" else None
    pointer = draw(_POINTER) if selection == "pointer" else None
    if form == "https":
        return SecretRef(
            mount,
            path,
            version,
            key=key,
            pointer=pointer,
            host=draw(_HOST),
            prefix=draw(_PREFIX),
            form="https",
            scheme=draw(st.sampled_from(["https", "http"])),
        )
    host = draw(st.one_of(st.none(), _HOST))
    return SecretRef(mount, path, version, key=key, pointer=pointer, host=host)


@FUZZ
@given(ref=valid_refs())
def test_format_then_parse_round_trips(ref: SecretRef) -> None:
    """KV2-AC-018, KV2-INV-003: parse_ref(format_ref(r)) == r, form preserved."""
    text = format_ref(ref)
    assert parse_ref(text, allow_path_form=ref.form == "path") == ref
