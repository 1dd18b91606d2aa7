"""KV2-AC-410 to KV2-AC-413: the deployment artefacts work as shipped.

- the systemd units pass ``systemd-analyze verify`` with no complaint at all (it exits 0 on
  unknown keys and bad values, so its stderr must be empty too);
- the systemd example reloads the app without giving kv2render any privilege;
- the Containerfile builds a slim, non-root image from a base pinned by digest (checked
  statically: no registry is reachable here to pull a base image; ``KV2RENDER_BUILD_IMAGE=1``
  builds it with podman or docker where one works);
- LICENSE is the licence pyproject.toml declares.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "examples" / "systemd"


def _kv2render_executable() -> str:
    found = shutil.which("kv2render") or str(Path(sys.executable).parent / "kv2render")
    return found


def _verify(units: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on copies whose ExecStart points at binaries that exist here."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("systemd-analyze is missing: .ci/run installs the systemd package")
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    copies = []
    for unit in units:
        text = unit.read_text(encoding="utf-8").replace(
            "/usr/local/bin/kv2render", _kv2render_executable()
        )
        copy = tmp_path / unit.name
        copy.write_text(text, encoding="utf-8")
        copies.append(copy)
    return subprocess.run(
        [analyze, "verify", *map(str, copies)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "units",
    [
        ["systemd/kv2render.service"],
        ["systemd/myapp-reload.path", "systemd/myapp-reload.service"],
        ["connector/kv2render.service"],
    ],
)
def test_systemd_units_verify_cleanly(units: list[str], tmp_path: Path) -> None:
    """KV2-AC-410"""
    proc = _verify([REPO / "examples" / u for u in units], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """KV2-AC-410: the check above can fail: a misspelt key is reported."""
    broken = tmp_path / "src"
    broken.mkdir()
    text = (SYSTEMD / "kv2render.service").read_text(encoding="utf-8")
    (broken / "kv2render.service").write_text(text.replace("Type=notify", "Type=notifyy"))
    proc = _verify([broken / "kv2render.service"], tmp_path)
    assert proc.stderr.strip() != ""


def test_systemd_example_needs_no_privilege_to_reload_the_app() -> None:
    """KV2-AC-411: under User=kv2render and NoNewPrivileges=yes, kv2render runs no
    ``systemctl``; a path unit run by systemd reloads the app when the output is replaced."""
    unit = (SYSTEMD / "kv2render.service").read_text(encoding="utf-8")
    assert "User=kv2render" in unit and "NoNewPrivileges=yes" in unit
    config = yaml.safe_load((SYSTEMD / "kv2render.yaml").read_text(encoding="utf-8"))
    for template in config["template"]:
        command = template.get("command") or []
        assert "systemctl" not in " ".join(command), template
    path_unit = (SYSTEMD / "myapp-reload.path").read_text(encoding="utf-8")
    watched = re.findall(r"^PathChanged=(\S+)$", path_unit, re.M)
    destinations = {t["destination"] for t in config["template"]}
    assert watched and set(watched) <= destinations
    assert "Unit=myapp-reload.service" in path_unit
    reload_unit = (SYSTEMD / "myapp-reload.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=/bin/systemctl try-reload-or-restart \S+$", reload_unit, re.M)
    assert "User=" not in reload_unit  # systemd runs it with the privilege to reload


def _containerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (REPO / "Containerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_is_slim_non_root_and_pinned() -> None:
    """KV2-AC-412 (static check; no registry is reachable here to pull the base)."""
    instructions = _containerfile()
    args = {}
    for word, rest in instructions:
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name] = value
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    for spec in froms:
        image = spec.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"base not pinned by digest: {image}"
        assert "slim" in image, f"not a slim base: {image}"
    final_stage = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM") :]
    users = [rest for word, rest in final_stage if word == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot checks it)"
    entry = [rest for word, rest in final_stage if word == "ENTRYPOINT"]
    assert entry == ['["kv2render"]']
    copied = " ".join(rest for word, rest in instructions if word in ("COPY", "ADD"))
    assert "ADD" not in [w for w, _ in instructions], "COPY only: ADD fetches and unpacks"
    for private in ("token", "secret", ".env", "*.pem", "venv"):
        assert private not in copied
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[1:2] == ["*"] or "*" in ignore, ".dockerignore starts from nothing"


def test_kubernetes_manifests_use_the_image_the_containerfile_builds() -> None:
    """KV2-AC-412: the manifests run the image as the Containerfile's non-root uid."""
    deployment = (REPO / "examples" / "kubernetes" / "deployment.yaml").read_text()
    assert "Containerfile" in deployment
    uid = next(r for w, r in _containerfile() if w == "USER").split(":")[0]
    assert f"runAsUser: {uid}" in deployment


@pytest.mark.skipif(
    os.environ.get("KV2RENDER_BUILD_IMAGE") != "1",
    reason="set KV2RENDER_BUILD_IMAGE=1 where podman or docker can pull the pinned base",
)
def test_containerfile_builds_and_runs(tmp_path: Path) -> None:
    """KV2-AC-412: the image builds, runs as a non-root uid and prints its version."""
    builder = shutil.which("podman") or shutil.which("docker")
    assert builder, "KV2RENDER_BUILD_IMAGE=1 needs podman or docker"
    tag = "kv2render:test"
    subprocess.run([builder, "build", "-t", tag, "-f", "Containerfile", "."], cwd=REPO, check=True)
    out = subprocess.run(
        [builder, "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() != "0"


def test_license_matches_pyproject() -> None:
    """KV2-AC-413"""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MPL-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("Mozilla Public License Version 2.0")
    assert "Exhibit A - Source Code Form License Notice" in text
    assert project["requires-python"] == ">=3.11"
    classifiers = project["classifiers"]
    minimum = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {minimum}" in classifiers
