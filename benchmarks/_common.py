"""Building blocks shared by benchmarks/run.py and its smoke test.

Everything here drives real processes: the dev server (benchmarks/_devserver_proc.py),
kv2render (as its console script starts it) and benchmarks/naive.py, with the same
interpreter. CPU and memory come from /proc, so the daemon rows need Linux.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# kv2render as the installed ``kv2render`` command starts it (pip's console-script wrapper
# calls kv2render.cli:main), with the source tree on PYTHONPATH so an A/B can swap it.
# ``python -m kv2render`` would add runpy's start-up, which no operator's run pays.
KV2RENDER = (
    PY,
    "-c",
    "import sys; sys.argv[0] = 'kv2render'; from kv2render.cli import main; sys.exit(main())",
)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without VAULT_*/BAO_*/KV2RENDER_*, source tree importable."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "KV2RENDER_"))
    }
    # KV2RENDER_BENCH_SRC: another source tree to measure instead (A/B of a proposed fix).
    src = os.environ.get("KV2RENDER_BENCH_SRC") or str(REPO)
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    # Measure the steady state of an installed package, whose .pyc files exist: with
    # PYTHONDONTWRITEBYTECODE set (as on CI images) every run would recompile any module
    # edited since its last .pyc. A private cache keeps the source tree untouched.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache_dir())
    env.update(extra or {})
    return env


def pycache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"kv2render-bench-pycache-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


# -- the dev server in its own process ------------------------------------------------------


class ServerProc:
    """benchmarks/_devserver_proc.py as a child process, driven over stdin/stdout."""

    def __init__(self, latency: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [PY, str(HERE / "_devserver_proc.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=clean_env(),
            text=True,
            bufsize=1,
        )
        hello = self._read()
        self.addr: str = hello["addr"]
        self.token: str = hello["token"]
        if latency:
            self.call(op="latency", s=latency)

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("benchmark dev server exited; see its stderr above")
        out: dict[str, Any] = json.loads(line)
        return out

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def seed(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[int]:
        versions: list[int] = []
        for start in range(0, len(items), 500):  # keep each control line modest
            chunk = [[p, dict(d)] for p, d in items[start : start + 500]]
            versions += self.call(op="seed", items=chunk)["versions"]
        return versions

    def count(self, prefix: str | None = None, method: str | None = None) -> int:
        return int(self.call(op="count", prefix=prefix, method=method)["n"])

    def summary(self) -> dict[str, Any]:
        return self.call(op="summary")

    def reset(self) -> None:
        self.call(op="reset")

    def set_latency(self, seconds: float) -> None:
        self.call(op="latency", s=seconds)

    def env(self) -> dict[str, str]:
        return clean_env({"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token})

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- configs and secrets --------------------------------------------------------------------


def secret_items(n: int, prefix: str = "bench/s") -> list[tuple[str, dict[str, str]]]:
    return [(f"{prefix}{i:04d}", {"user": f"u{i}", "password": f"pw-{i:04d}"}) for i in range(n)]


def template_body(path: str, version: int | None = None) -> str:
    q = f"?version={version}" if version else ""
    ref = f"vault+kv2:///secret/data/{path}{q}"
    return f'user={{{{ kv2("{ref}#user") }}}}\npassword={{{{ kv2("{ref}#password") }}}}\n'


def computed_template_body(path: str) -> str:
    """The same two references, their path built while rendering (``~``): found by the
    render itself, not by parsing (KV2-INV-390)."""
    head, tail = path.rsplit("/", 1)
    ref = f'"vault+kv2:///secret/data/{head}/" ~ "{tail}"'
    return f'user={{{{ kv2({ref} ~ "#user") }}}}\npassword={{{{ kv2({ref} ~ "#password") }}}}\n'


def write_config(
    directory: Path,
    templates: Sequence[tuple[str, str]],
    *,
    interval: str | None = None,
    concurrency: int | None = None,
    metrics: str | None = None,
    change_detection: str | None = None,
) -> Path:
    """A kv2render config: one ``contents`` template per (body, destination name);
    ``metrics``: the metrics listener's HOST:PORT (issue 17), off when None;
    ``change_detection``: ``template_config.change_detection`` (issue 18), default when None.

    Two references per template (user and password) to the same secret: the naive
    baseline reads twice, kv2render once (KV2-INV-072)."""
    out = directory / "out"
    out.mkdir(parents=True, exist_ok=True)
    tree: dict[str, Any] = {
        "template": [{"contents": body, "destination": str(out / name)} for body, name in templates]
    }
    tc: dict[str, Any] = {}
    if interval is not None:
        tc["static_secret_render_interval"] = interval
    if concurrency is not None:
        tc["concurrency"] = concurrency
    if change_detection is not None:
        tc["change_detection"] = change_detection
    if tc:
        tree["template_config"] = tc
    if metrics is not None:
        tree["metrics"] = {"address": metrics}
    path = directory / "kv2render.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def templates_over(
    n_templates: int, secrets: Sequence[str], version: int | None = None
) -> list[tuple[str, str]]:
    return [
        (template_body(secrets[i % len(secrets)], version), f"t{i:04d}.conf")
        for i in range(n_templates)
    ]


def fresh_outputs(config: Path) -> None:
    """Empty the output directory so each repetition is a first deploy (every file written)."""
    out = config.parent / "out"
    for child in out.iterdir():
        child.unlink()


# -- timing ---------------------------------------------------------------------------------


def run_timed(argv: Sequence[str], env: Mapping[str, str], timeout: float = 300) -> float:
    """Wall seconds of one process run; raises when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {tail}")
    return elapsed


def interleaved(
    runs: Mapping[str, Callable[[], float]], reps: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run A,B,A,B,... ``reps`` times (after ``warmup`` unrecorded rounds); samples per name.

    Interleaving spreads drift on a shared machine over every contender alike (issue 8)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + reps):
        for name, fn in runs.items():
            value = fn()
            if i >= warmup:
                samples[name].append(value)
    return samples


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


# -- /proc ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (clock-tick resolution)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on CPU per live thread (/proc/<pid>/task/*/schedstat), or {} if absent.

    Finer than clock ticks (10 ms), which matters for an idle daemon; only valid as a
    difference when the same threads exist at both ends (a dead thread's time is gone)."""
    out: dict[int, int] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def cpu_delta(pid: int, before: tuple[float, dict[int, int]]) -> float:
    """CPU seconds since ``before = (cpu_seconds(pid), thread_cpu_ns(pid))``."""
    ticks0, threads0 = before
    threads1 = thread_cpu_ns(pid)
    ticks = cpu_seconds(pid) - ticks0  # includes threads that ended in between
    if threads0 and threads1.keys() == threads0.keys():
        precise = sum(threads1[t] - threads0[t] for t in threads1) / 1e9
        # More than two ticks above the per-thread sum: a thread came and went unseen.
        if ticks <= precise + 2 / CLK_TCK:
            return precise
    return ticks


def cpu_mark(pid: int) -> tuple[float, dict[int, int]]:
    return cpu_seconds(pid), thread_cpu_ns(pid)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM")


def wait_for(pred: Callable[[], bool], timeout: float, every: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(every)
    return pred()


# -- the daemon -----------------------------------------------------------------------------


@contextlib.contextmanager
def daemon(
    config: Path,
    env: Mapping[str, str],
    argv: Sequence[str] | None = None,
    log_name: str = "daemon.log",
) -> Iterator[subprocess.Popen[bytes]]:
    """``kv2render --config C`` (no --once), or ``argv`` (another long-running
    tool, e.g. ``bao agent``), until the block ends, then SIGTERM."""
    log = (config.parent / log_name).open("wb")
    proc = subprocess.Popen(
        list(argv or [*KV2RENDER, "--config", str(config), "--log-level", "warn"]),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def daemon_log_tail(config: Path, chars: int = 1500) -> str:
    path = config.parent / "daemon.log"
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def all_written(config: Path, n: int) -> Callable[[], bool]:
    out = config.parent / "out"
    return lambda: sum(1 for p in out.iterdir() if p.suffix == ".conf") >= n
