"""Seed files (KV2-AC-147, KV2-FC-130)."""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest

from kv2render.devserver import DevServer
from kv2render.devserver.seed import SeedError
from tests.devserver.helpers import raw, read

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dev-seed.yaml"


def test_example_seed_is_served_as_written() -> None:
    """KV2-AC-147: the commented example seed loads; every section is reachable."""
    with DevServer(seed=EXAMPLE) as srv:
        c = hvac.Client(url=srv.url, token=srv.root_token)
        assert read(c, "app/db")["data"]["data"]["username"] == "app"
        api = read(c, "app/api")["data"]
        assert api["data"] == {"token": "second-version"} and api["metadata"]["version"] == 2
        assert read(c, "app/api", version=1)["data"]["data"] == {"token": "first-version"}
        assert read(c, "billing/config", mount_point="apps")["data"]["data"]["replicas"] == 3
        assert raw(srv, "GET", "/v1/apps/config").json["data"]["max_versions"] == 5
        assert raw(srv, "GET", "/v1/kv-legacy/old/thing").json["data"] == {"value": "unversioned"}
        ns = raw(srv, "GET", "/v1/secret/data/db", headers={"X-Vault-Namespace": "team-a"})
        assert ns.json["data"]["data"] == {"password": "team-a-password"}
        # fixed-id token with policy
        assert raw(srv, "GET", "/v1/secret/data/app/db", token="dev-app-token").status == 200
        assert raw(srv, "GET", "/v1/apps/data/billing/config", token="dev-app-token").status == 403
        # logins
        app = hvac.Client(url=srv.url)
        app.auth.approle.login(
            "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
        )
        assert read(app, "app/db")["data"]["data"]["password"] == "dev-only-password"
        hvac.Client(url=srv.url).auth.userpass.login("alice", "alice-dev-password")
        r = raw(
            srv,
            "POST",
            "/v1/team-a/auth/approle/login",
            {"role_id": "team-a-role", "secret_id": "team-a-secret"},
            token=None,
        )
        assert r.status == 200


def test_seed_dict_and_kubernetes_jwt_from_seed() -> None:
    """KV2-AC-141, KV2-AC-147: JWTs listed in a seed dict log in; others do not."""
    seed = {
        "secrets": {"secret/x": {"a": 1}},
        "policies": {"p": {"secret/data/x": ["read"]}},
        "kubernetes": [{"role": "r", "jwt": "a.b.c", "policies": ["p"]}],
    }
    with DevServer(seed=seed) as srv:
        c = hvac.Client(url=srv.url)
        c.auth.kubernetes.login("r", "a.b.c")
        assert read(c, "x")["data"]["data"] == {"a": 1}
        assert (
            raw(
                srv, "POST", "/v1/auth/kubernetes/login", {"role": "r", "jwt": "x.y.z"}, token=None
            ).status
            == 403
        )


@pytest.mark.parametrize(
    ("seed", "message"),
    [
        ({"secrtes": {}}, "unknown top-level keys ['secrtes']"),
        ({"secrets": {"nomount/x": {"a": 1}}}, "secrets.nomount/x: no mount hosts this path"),
        ({"secrets": {"secret/x": "flat"}}, "secrets.secret/x: version 1 must be a mapping"),
        ({"approle": [{"role_name": "r"}]}, "approle[0]: missing keys ['role_id']"),
        ({"approle": [{"role_name": "r", "role_id": "i", "colour": 1}]}, "approle[0]: unknown"),
        ({"policies": {"p": {"secret/*": ["reed"]}}}, "unknown capabilities ['reed']"),
        ({"mounts": {"m/": {"version": 3}}}, "version must be 1 or 2"),
        ({"tokens": [{"id": "t", "ttl": "soon"}]}, "tokens[0].ttl: cannot parse duration"),
    ],
)
def test_invalid_seed_names_the_place(seed: dict[str, object], message: str) -> None:
    """KV2-FC-130: an invalid seed raises SeedError naming the key path."""
    with pytest.raises(SeedError) as err:
        DevServer(seed=seed)
    assert message in str(err.value)


def test_seed_file_errors(tmp_path: Path) -> None:
    """KV2-FC-130: unreadable or non-mapping YAML is a SeedError naming the file."""
    with pytest.raises(SeedError, match="cannot read"):
        DevServer(seed=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SeedError, match="top level must be a mapping"):
        DevServer(seed=bad)
    bad.write_text("secrets: [unclosed\n")
    with pytest.raises(SeedError, match="not valid YAML"):
        DevServer(seed=bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert DevServer(seed=empty).root_token


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_seeded_approle_token_max_ttl_caps_renewals(flavor: str) -> None:
    """KV2-AC-342: an approle's token_max_ttl (seed or add_approle) caps renew-self; the
    openbao flavour words the warning as OpenBao does (what is left of the max, Go style)."""
    seed = {
        "approle": [
            {
                "role_name": "r",
                "role_id": "rid",
                "secret_id": "sid",
                "token_ttl": "1m",
                "token_max_ttl": "2m",
            }
        ]
    }
    with DevServer(flavor=flavor, seed=seed) as srv:
        login = raw(srv, "POST", "/v1/auth/approle/login", {"role_id": "rid", "secret_id": "sid"})
        token = login.json["auth"]["client_token"]
        r = raw(srv, "POST", "/v1/auth/token/renew-self", {"increment": "1h"}, token=token)
        assert r.status == 200 and 0 < r.json["auth"]["lease_duration"] <= 120
        (warning,) = r.json["warnings"]
        if flavor == "openbao":
            assert warning.startswith('TTL of "1h" exceeded the effective max_ttl of "1m5')
        assert warning.endswith("TTL value is capped accordingly")
