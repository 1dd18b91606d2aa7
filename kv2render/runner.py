"""One render pass: unique refs -> reads -> render -> write -> commands.

The pass is the unit both ``--once`` and the daemon run (consul-template's
``Runner.Run``, minus its habit of re-running every template on any change):

1. every template was compiled up front (:func:`prepare`), so the set of
   secrets it needs is known before anything is read (KV2-INV-071);
2. each unique :class:`SecretLocation` is read once, concurrently, in a small
   bounded pool (KV2-INV-052);
3. each template whose secrets all arrived is rendered in memory;
4. its bytes go through :func:`writer.write_atomic`, which writes nothing when
   they are unchanged (KV2-INV-093);
5. after all writes, each distinct command of a template that changed runs once
   (KV2-INV-096).

A template may compute a secret path while rendering (``secret (printf ...)``,
``kv2("..." ~ name)``). Its render then reports the secrets it did not find
(:class:`SecretsMissing`); :func:`render_rounds` reads those of every template
in one batch, each once, and renders those templates again, at most
:data:`MAX_DISCOVERY_ROUNDS` times (KV2-INV-390, KV2-INV-391; consul-template's
render -> missing -> fetch -> render loop). An incomplete render is never written.

A failure in one template leaves its destination untouched and does not stop
the others (KV2-INV-094, KV2-INV-111); the pass reports every outcome in a
:class:`PassReport`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from kv2render.config import Config, TemplateSpec
from kv2render.errors import (
    CommandError,
    ConfigError,
    Kv2RenderError,
    RenderError,
    SecretsMissing,
    TemplateSyntaxError,
    raise_all,
)
from kv2render.logsetup import count
from kv2render.model import SecretVersion
from kv2render.redact import redactor, secret_texts
from kv2render.refs import SecretLocation, value_to_text
from kv2render.store.client import SecretStore

if TYPE_CHECKING:
    import subprocess
    from typing import IO

log = logging.getLogger(__name__)

# Names a command's environment never inherits (KV2-INV-096): any credential
# kv2render was given through the environment, and hvac's own fallbacks.
_COMMAND_ENV_DENY_PREFIXES = ("VAULT_", "BAO_", "KV2RENDER_LIVE_")
_COMMAND_ENV_ALLOW = frozenset(
    {"VAULT_ADDR", "BAO_ADDR", "VAULT_NAMESPACE", "BAO_NAMESPACE", "VAULT_CACERT", "BAO_CACERT"}
)


class Compiled(Protocol):
    """What both template engines (Jinja2 and consul-template) compile to."""

    @property
    def name(self) -> str: ...

    @property
    def locations(self) -> frozenset[SecretLocation]: ...


# KV2-INV-391: read rounds for secrets whose paths are computed while rendering, after the
# pass's first reads. Enough for a chain of five secrets each naming the next; a template
# still missing secrets after them fails (exit 5), nothing written.
MAX_DISCOVERY_ROUNDS = 5


@dataclass(frozen=True)
class PreparedTemplate:
    """A template entry, compiled, with the secrets it needs known up front.

    ``locations`` are the constant references; ``dynamic`` names (``name:line``) the calls
    whose path is computed while rendering. When there are any, ``render`` takes a second
    argument ``used=set()`` and puts the computed paths' locations of its render in it.
    """

    spec: TemplateSpec
    compiled: Compiled | None  # None for a ``ref:`` entry
    locations: frozenset[SecretLocation]
    render: Callable[..., bytes] = field(repr=False)
    dynamic: tuple[str, ...] = ()


@dataclass(frozen=True)
class RenderResult:
    """What happened to one template in one pass (metadata only)."""

    template: TemplateSpec
    did_write: bool = False
    versions: Mapping[SecretLocation, int] = field(default_factory=dict)
    error: Kv2RenderError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class CommandResult:
    command: tuple[str, ...] | str
    templates: tuple[int, ...]
    error: CommandError | None = None


@dataclass(frozen=True)
class PassReport:
    results: tuple[RenderResult, ...]
    commands: tuple[CommandResult, ...] = ()
    reads: int = 0

    @property
    def failed(self) -> tuple[RenderResult, ...]:
        return tuple(r for r in self.results if r.error is not None)

    @property
    def exit_code(self) -> int:
        """0 when every template rendered; else the first failure's code in config order.

        A failed command counts after the render failures (KV2-INV-111).
        """
        for result in self.results:
            if result.error is not None:
                return result.error.exit_code
        for command in self.commands:
            if command.error is not None:
                return command.error.exit_code
        return 0

    def summary(self) -> str:
        """One line: templates written/unchanged/failed, commands run/failed, reads."""
        written = sum(1 for r in self.results if r.did_write)
        failed = len(self.failed)
        text = (
            f"{count(len(self.results), 'template')}: {written} written, "
            f"{len(self.results) - written - failed} unchanged, {failed} failed"
        )
        if self.commands:
            # KV2-INV-399: a failed command counts in the summary as in the exit code.
            failed_commands = sum(1 for c in self.commands if c.error is not None)
            text += f"; {count(len(self.commands), 'command')} run, {failed_commands} failed"
        return f"{text}; {count(self.reads, 'secret')} read"


# -- preparation ---------------------------------------------------------------------------


def prepare(config: Config) -> list[PreparedTemplate]:
    """Compile every template; raise every problem found, not only the first (KV2-INV-398)."""
    tc = config.template_config
    prepared, problems = prepare_all(config.templates, tc.max_output_bytes, tc.render_timeout)
    raise_all(problems)
    return prepared


def prepare_all(
    specs: Iterable[TemplateSpec], max_output_bytes: int, render_timeout: float
) -> tuple[list[PreparedTemplate], list[ConfigError]]:
    """Compile each of ``specs``: those that compiled, and the problems of the others."""
    prepared: list[PreparedTemplate] = []
    problems: list[ConfigError] = []
    for spec in specs:
        try:
            prepared.append(
                prepare_one(spec, max_output_bytes=max_output_bytes, render_timeout=render_timeout)
            )
        except ConfigError as exc:
            problems.append(exc)
    return prepared, problems


def _read_source(spec: TemplateSpec) -> str:
    assert spec.source is not None
    try:
        return spec.source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"source file {str(spec.source)!r} does not exist", where=f"{spec.where}.source"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"source file {str(spec.source)!r} is not UTF-8 text", where=f"{spec.where}.source"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read source file {str(spec.source)!r}: {exc.strerror}",
            where=f"{spec.where}.source",
        ) from None


def _encode(text: str, where: str, errors: str = "strict") -> bytes:
    """UTF-8 bytes of an output; a lone surrogate (a ``\\ud800`` escape in a server's JSON)
    is a RenderError, not an internal error (issue 10, KV2-AC-287)."""
    try:
        return text.encode("utf-8", errors)
    except UnicodeEncodeError:
        raise RenderError(
            "the output holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot encode",
            where=where,
            hint="a secret value carries an invalid \\u escape; fix the value at the source",
        ) from None


def prepare_one(
    spec: TemplateSpec, *, max_output_bytes: int = 1 << 20, render_timeout: float = 10.0
) -> PreparedTemplate:
    """Compile one template entry (KV2-INV-071: references are known before any read)."""
    if spec.ref is not None:
        ref = spec.ref
        location = ref.location
        if ref.key is None and ref.pointer is None and not spec.whole_secret:
            # config_build refuses this at load time; a TemplateSpec built in code too.
            raise ConfigError(
                "names no key; a ref: output writes one value unless whole_secret is set",
                where=f"{spec.where}.ref",
            )

        def render_ref(secrets: Mapping[SecretLocation, SecretVersion]) -> bytes:
            text = value_to_text(ref.select(secrets[location].data))
            if text == "":
                # The connector refuses an empty password (KV2-FC-009).
                raise RenderError(
                    f"the value selected by {ref} is empty; the consumer would read an empty "
                    "password",
                    where=f"{spec.where}.ref",
                )
            return _encode(text, f"{spec.where}.ref")

        return PreparedTemplate(spec, None, frozenset({location}), render_ref)

    text = spec.contents if spec.contents is not None else _read_source(spec)
    name = str(spec.source) if spec.source is not None else f"{spec.where}.contents"
    if spec.syntax == "consul-template":
        from kv2render.render import ctmpl

        ct = ctmpl.compile_ctmpl(
            text,
            name=name,
            left_delim=spec.left_delimiter or "{{",
            right_delim=spec.right_delimiter or "}}",
            error_on_missing_key=spec.error_on_missing_key,
        )

        def render_ct(
            secrets: Mapping[SecretLocation, SecretVersion],
            used: set[SecretLocation] | None = None,
        ) -> bytes:
            # surrogateescape: ctmpl keeps base64Decode's non-UTF-8 bytes as lone surrogates
            # (ctmpl/__init__.py); strict UTF-8 crashed on them (issue 10).
            # env/mustEnv/envOrDefault see the commands' environment: no VAULT_TOKEN/BAO_TOKEN
            # (KV2-INV-101); a template could otherwise write the token into a file (issue 10).
            text = ctmpl.render_ctmpl(
                ct,
                secrets,
                env=command_environment(),
                max_output_bytes=max_output_bytes,
                render_timeout=render_timeout,
                used=used,
            )
            out = _encode(text, name, "surrogateescape")
            if len(out) > max_output_bytes:
                raise RenderError(
                    f"output is larger than max_output_bytes ({max_output_bytes})", where=name
                )
            return out

        return PreparedTemplate(spec, ct, ct.locations, render_ct, ct.dynamic)

    if spec.left_delimiter or spec.right_delimiter:
        raise TemplateSyntaxError(
            "left_delimiter/right_delimiter apply to consul-template syntax only",
            where=spec.where,
            hint="set syntax: consul-template, or remove the delimiters",
        )
    from kv2render.render import jinja

    compiled = jinja.compile_template(
        text,
        name=name,
        error_on_missing_key=spec.error_on_missing_key,
        max_output_bytes=max_output_bytes,
        render_timeout=render_timeout,
    )

    def render_jinja(
        secrets: Mapping[SecretLocation, SecretVersion], used: set[SecretLocation] | None = None
    ) -> bytes:
        return jinja.render(compiled, secrets, used=used).encode("utf-8")

    return PreparedTemplate(spec, compiled, compiled.locations, render_jinja, compiled.dynamic)


# -- reading -------------------------------------------------------------------------------


def read_secrets(
    store: SecretStore, locations: Iterable[SecretLocation], *, concurrency: int = 8
) -> dict[SecretLocation, SecretVersion | Kv2RenderError]:
    """Read each location once, in a bounded pool; failures come back as values."""
    unique = sorted(set(locations))
    out: dict[SecretLocation, SecretVersion | Kv2RenderError] = {}
    if not unique:
        return out

    def read_one(location: SecretLocation) -> SecretVersion | Kv2RenderError:
        try:
            version = store.read(location)
        except Kv2RenderError as exc:
            return exc
        log.debug("read %s@v%d", location, version.version)
        return version

    results = _bounded_map(read_one, unique, concurrency, "kv2render-read")
    out.update(zip(unique, results, strict=True))
    return out


_A = TypeVar("_A")
_R = TypeVar("_R")


def _bounded_map(
    fn: Callable[[_A], _R], items: Sequence[_A], concurrency: int, name: str
) -> list[_R]:
    """``fn`` over ``items``, at most ``concurrency`` at a time, results in order. One item
    (or concurrency 1) runs inline: no pool, no thread, no import."""
    workers = max(1, min(concurrency, len(items)))
    if workers == 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor  # only when there is work to share

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        return list(pool.map(fn, items))


# -- one pass ------------------------------------------------------------------------------


Secrets = Mapping[SecretLocation, SecretVersion | Kv2RenderError]


class _Readable(Mapping[SecretLocation, SecretVersion]):
    """The secrets read so far minus the failed reads: where a path computed while rendering
    is looked up. A view, not a copy (a pass may hold thousands of secrets)."""

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets

    def __getitem__(self, location: SecretLocation) -> SecretVersion:
        got = self._secrets[location]
        if isinstance(got, Kv2RenderError):
            raise KeyError(location)
        return got

    def __iter__(self) -> Iterator[SecretLocation]:
        return (k for k, v in self._secrets.items() if not isinstance(v, Kv2RenderError))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Layered(Mapping[SecretLocation, SecretVersion | Kv2RenderError]):
    """``top`` (what the rounds read) over ``base`` (the pass's secrets), without copying."""

    def __init__(self, top: Secrets, base: Secrets) -> None:
        self._top, self._base = top, base

    def __getitem__(self, location: SecretLocation) -> SecretVersion | Kv2RenderError:
        if location in self._top:
            return self._top[location]
        return self._base[location]

    def __iter__(self) -> Iterator[SecretLocation]:
        yield from self._top
        yield from (k for k in self._base if k not in self._top)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _missing_outcome(exc: SecretsMissing, secrets: Secrets) -> Kv2RenderError:
    """SecretsMissing while some are unread (the runner reads them); else the first failed
    read among them. A failed read is not final while others are unread: a path built from a
    secret not read yet may be a wrong guess that the next round no longer asks for."""
    if any(loc not in secrets for loc in exc.locations):
        return exc
    for loc in sorted(exc.locations):
        got = secrets[loc]
        if isinstance(got, Kv2RenderError):
            return got
    return exc  # not reached: a read secret is never missing


_MIN_SECRET_TEXT = 4  # as the redaction's: shorter values are too common to judge by


def _path_from_a_value(
    exc: SecretsMissing, read: Sequence[SecretVersion | Kv2RenderError]
) -> RenderError | None:
    """A computed path that holds a value of a secret the template read is refused, unread
    (KV2-INV-394): paths are metadata, logged and shown in the status file, so a path built
    from a secret's value would carry that value there. Nothing of the path is shown."""
    texts = {
        t
        for t in secret_texts(v for v in read if isinstance(v, SecretVersion))
        if len(t) >= _MIN_SECRET_TEXT
    }
    for location, where in sorted(exc.locations.items()):
        path = f"{location.mount}/{location.path}"
        if any(text in path for text in texts):
            return RenderError(
                "a secret path computed while rendering contains a value of a secret this "
                "template read; paths are logged and shown in the status file as metadata",
                where=where,
                hint="build secret paths from names (env, constants), never from secret values",
            )
    return None


def render_template(
    item: PreparedTemplate,
    secrets: Secrets,
    *,
    write: Callable[..., bool] | None = None,
) -> RenderResult:
    """Render and write one template; never raises for an expected failure."""
    from kv2render.output import writer

    spec = item.spec
    for location in sorted(item.locations):
        got = secrets.get(location)
        if isinstance(got, Kv2RenderError):
            return RenderResult(spec, error=got)
        if got is None:  # a bug in the caller, not the user's fault
            return RenderResult(spec, error=Kv2RenderError(f"{location} was not read"))
    # Only this template's secrets: a pass over many templates must not copy the whole
    # pass's secrets once per template (found by benchmarks/run.py, scale rows).
    available: Mapping[SecretLocation, SecretVersion] = {
        loc: cast(SecretVersion, secrets[loc]) for loc in item.locations
    }
    versions = {loc: version.version for loc, version in available.items()}
    used: set[SecretLocation] = set()
    try:
        if item.dynamic:
            # KV2-INV-390: computed paths look in every secret read so far this pass.
            data = item.render(_Readable(secrets), used=used)
            for loc in used:
                versions[loc] = cast(SecretVersion, secrets[loc]).version
        else:
            data = item.render(available)
    except SecretsMissing as exc:
        derived = _path_from_a_value(exc, [secrets[loc] for loc in versions if loc in secrets])
        error = derived or _missing_outcome(exc, secrets)
        return RenderResult(spec, versions=versions, error=error)
    except Kv2RenderError as exc:
        return RenderResult(spec, versions=versions, error=exc)
    try:
        did_write = (write or writer.write_atomic)(
            spec.destination,
            data,
            perms=spec.perms,
            user=spec.user,
            group=spec.group,
            create_dest_dirs=spec.create_dest_dirs,
            backup=spec.backup,
        )
    except Kv2RenderError as exc:
        return RenderResult(spec, versions=versions, error=exc)
    return RenderResult(spec, did_write=did_write, versions=versions)


def render_all(
    jobs: Sequence[tuple[PreparedTemplate, Secrets]],
    *,
    concurrency: int = 8,
    write: Callable[..., bool] | None = None,
) -> list[RenderResult]:
    """Render and write each job, ``concurrency`` at a time; results in the jobs' order.

    Writes are fsync-bound (file, then folder): run one after another, a first deploy of
    a thousand files waits on two thousand fsyncs in a row. Destinations are unique
    (config refuses duplicates), so the writes cannot race each other.
    """

    def one(job: tuple[PreparedTemplate, Secrets]) -> RenderResult:
        item, secrets = job
        try:
            return render_template(item, secrets, write=write)
        except Exception as exc:  # a bug, not the user's fault: it costs this template only
            log.debug("render crashed", exc_info=True)
            error = Kv2RenderError(f"internal error {type(exc).__name__}", where=item.spec.where)
            return RenderResult(item.spec, error=error)

    return _bounded_map(one, jobs, concurrency, "kv2render-render")


def render_rounds(
    jobs: Sequence[tuple[PreparedTemplate, Secrets]],
    fetch: Callable[[set[SecretLocation]], Secrets],
    *,
    concurrency: int = 8,
    write: Callable[..., bool] | None = None,
) -> list[RenderResult]:
    """:func:`render_all`, then the rounds for paths computed while rendering (KV2-INV-390).

    Each round reads, in one ``fetch`` call, the secrets every waiting template found
    missing (each once, KV2-INV-052), and renders those templates again with them. After
    :data:`MAX_DISCOVERY_ROUNDS` rounds a template still waiting fails (KV2-FC-391).
    """
    results = render_all(jobs, concurrency=concurrency, write=write)
    extra: dict[SecretLocation, SecretVersion | Kv2RenderError] = {}
    for _ in range(MAX_DISCOVERY_ROUNDS):
        waiting = [i for i, r in enumerate(results) if isinstance(r.error, SecretsMissing)]
        if not waiting:
            break
        want: set[SecretLocation] = set()
        for i in waiting:
            exc = cast(SecretsMissing, results[i].error)
            base = jobs[i][1]
            want |= {loc for loc in exc.locations if loc not in base and loc not in extra}
        if want:
            extra.update(fetch(want))
        again: list[tuple[PreparedTemplate, Secrets]] = [
            (jobs[i][0], _Layered(extra, jobs[i][1])) for i in waiting
        ]
        rendered = render_all(again, concurrency=concurrency, write=write)
        for i, result in zip(waiting, rendered, strict=True):
            results[i] = result
    return [_rounds_exhausted(r) for r in results]


def _rounds_exhausted(result: RenderResult) -> RenderResult:
    if not isinstance(result.error, SecretsMissing):
        return result
    first = min(result.error.locations)
    error = RenderError(
        f"secret paths computed while rendering still named unread secrets after "
        f"{MAX_DISCOVERY_ROUNDS} read rounds (first: {first})",
        where=result.error.locations[first],
        hint="a chain of secrets that name further secrets may be at most "
        f"{MAX_DISCOVERY_ROUNDS} deep; read fewer levels through computed paths",
    )
    return dataclasses.replace(result, error=error)


def run_pass(
    prepared: Iterable[PreparedTemplate],
    store: SecretStore,
    *,
    concurrency: int = 8,
    secrets: Mapping[SecretLocation, SecretVersion | Kv2RenderError] | None = None,
    run_commands: bool = True,
) -> PassReport:
    """Render ``prepared``; read what ``secrets`` does not already hold."""
    items = list(prepared)
    needed = {loc for item in items for loc in item.locations}
    have: dict[SecretLocation, SecretVersion | Kv2RenderError] = dict(secrets or {})
    fetched = read_secrets(store, needed - have.keys(), concurrency=concurrency)
    have.update(fetched)
    reads = len(fetched)
    discovered: dict[SecretLocation, SecretVersion | Kv2RenderError] = {}

    def discover(locations: set[SecretLocation]) -> Secrets:
        nonlocal reads
        got = read_secrets(store, locations, concurrency=concurrency)
        reads += len(got)
        discovered.update(got)
        return got

    jobs: list[tuple[PreparedTemplate, Secrets]] = [(item, have) for item in items]
    results = tuple(render_rounds(jobs, discover, concurrency=concurrency))
    for result in results:
        log_result(result)
    # Command output is redacted with every value this pass read, discovered ones too.
    values = (*have.values(), *discovered.values())
    read = [v for v in values if isinstance(v, SecretVersion)]
    commands = run_changed_commands(results, read) if run_commands else ()
    return PassReport(results, commands, reads=reads)


def describe_versions(versions: Mapping[SecretLocation, int]) -> str:
    return ", ".join(f"{loc.mount}/{loc.path}@v{v}" for loc, v in sorted(versions.items()))


def log_result(result: RenderResult) -> None:
    """One INFO line per write, DEBUG when unchanged, ERROR on failure (metadata only)."""
    dest = str(result.template.destination)
    if result.error is not None:
        log.error(
            "%s -> %s: %s",
            result.template.where,
            dest,
            result.error,
            extra={"destination": dest, "error_type": type(result.error).__name__},
        )
    elif result.did_write:
        log.info(
            "rendered %s -> %s",
            describe_versions(result.versions) or result.template.where,
            dest,
            extra={"destination": dest},
        )
    else:
        log.debug("unchanged %s", dest, extra={"destination": dest})


# -- commands ------------------------------------------------------------------------------


def command_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a command runs with: kv2render's own, minus credentials (KV2-INV-096)."""
    source = os.environ if base is None else base
    return {
        name: value
        for name, value in source.items()
        if name in _COMMAND_ENV_ALLOW or not name.startswith(_COMMAND_ENV_DENY_PREFIXES)
    }


# A command's output is logged at DEBUG, one record per line (KV2-INV-397), within bounds:
# a chatty or hostile command cannot flood the log or hold kv2render's memory.
OUTPUT_MAX_LINES = 200  # per command run, stdout and stderr together
OUTPUT_MAX_LINE = 1000  # characters kept of one line
_OUTPUT_GRACE = 1.0  # seconds to collect the last lines after the command ended


def run_command(
    command: tuple[str, ...] | str,
    *,
    timeout: float,
    where: str,
    scrub: Callable[[str], str] | None = None,
) -> None:
    """Run one command with a timeout; raise CommandError (no output captured in messages).

    Its stdout and stderr never reach kv2render's own: at ``--log-level debug`` each line
    becomes one DEBUG log record (``scrub`` applied, so the pass's secret values read
    ``[redacted]``), otherwise it goes to /dev/null (KV2-INV-397).
    """
    import subprocess  # only a pass that changed a file with a command pays for it

    shell = isinstance(command, str)
    label = command if isinstance(command, str) else " ".join(command)
    capture = log.isEnabledFor(logging.DEBUG)
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    started = time.monotonic()
    try:
        # Its own session, so that a timeout kills the whole group: a shell's children
        # would otherwise outlive it and keep its output pipes open (KV2-AC-103).
        proc = subprocess.Popen(  # noqa: S603 - the operator's own command
            command if shell else list(command),
            shell=shell,
            env=command_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(
            f"command {label!r} could not start: {exc.strerror or exc}", where=where
        ) from None
    lines = _OutputLog(proc, where, scrub) if capture else None
    hint = None if capture else "run with --log-level debug to log its output"
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CommandError(
            f"command {label!r} timed out after {timeout:g}s", where=where, hint=hint
        ) from None
    finally:
        if lines is not None:
            lines.finish()
    if returncode != 0:
        raise CommandError(
            f"command {label!r} exited with status {returncode}", where=where, hint=hint
        )
    log.info("command %r ran for %s in %.2fs", label, where, time.monotonic() - started)


class _OutputLog:
    """A command's stdout and stderr, read by one thread each, logged one line per record.

    The threads drain their pipe to the end, logging at most OUTPUT_MAX_LINES lines in all,
    so the command never blocks on a full pipe. A background process the command started
    may hold a pipe open after the command ends: :meth:`finish` waits a moment, then leaves
    that thread draining (it ends with the pipe) rather than cutting the pipe under it.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], where: str, scrub: Callable[[str], str] | None
    ) -> None:
        import threading

        self._where = where
        self._scrub = scrub
        self._lock = threading.Lock()
        self._left = OUTPUT_MAX_LINES
        self._threads = [
            threading.Thread(
                target=self._pump, args=(stream, name), name=f"kv2render-{name}", daemon=True
            )
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes], name: str) -> None:
        try:
            for raw in iter(lambda: stream.readline(4 * OUTPUT_MAX_LINE), b""):
                self._line(raw, name)
        except (OSError, ValueError):  # the pipe went away: nothing more to read
            pass
        finally:
            stream.close()

    def _line(self, raw: bytes, name: str) -> None:
        with self._lock:
            self._left -= 1
            left = self._left
        if left < -1:
            return
        if left == -1:
            log.debug(
                "%s: further output not logged (limit %d lines)",
                self._where,
                OUTPUT_MAX_LINES,
                extra={"stream": name},
            )
            return
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if len(text) > OUTPUT_MAX_LINE:
            text = text[:OUTPUT_MAX_LINE] + "…"
        if self._scrub is not None:
            text = self._scrub(text)
        log.debug("%s %s: %s", self._where, name, text, extra={"stream": name})

    def finish(self) -> None:
        deadline = time.monotonic() + _OUTPUT_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_changed_commands(
    results: Iterable[RenderResult], secrets: Iterable[SecretVersion] = ()
) -> tuple[CommandResult, ...]:
    """Run each distinct command of the templates that wrote, once, in config order.

    Like consul-template (``findCommand``), a command shared by several templates
    runs once per pass. A failure is reported and never triggers re-reads
    (a Vault Agent complaint: hashicorp/vault#12566). ``secrets``: the values the pass
    read, redacted from the commands' logged output (KV2-INV-397).
    """
    scrub = redactor(secrets) if log.isEnabledFor(logging.DEBUG) else None
    order: list[tuple[str, ...] | str] = []
    owners: dict[tuple[str, ...] | str, list[RenderResult]] = {}
    for result in results:
        command = result.template.command
        if not result.did_write or command is None:
            continue
        if command not in owners:
            order.append(command)
            owners[command] = []
        owners[command].append(result)
    out: list[CommandResult] = []
    for command in order:
        first = owners[command][0].template
        indices = tuple(r.template.index for r in owners[command])
        try:
            run_command(
                command, timeout=first.command_timeout, where=f"{first.where}.command", scrub=scrub
            )
        except CommandError as exc:
            log.error("%s", exc)
            out.append(CommandResult(command, indices, exc))
        else:
            out.append(CommandResult(command, indices))
    return tuple(out)
