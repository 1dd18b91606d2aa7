"""One render pass: unique refs -> reads -> render -> write -> commands.

The pass is the unit both ``--once`` and the daemon run (consul-template's
``Runner.Run``, minus its habit of re-running every template on any change):

1. every template was compiled up front (:func:`prepare`, in ``render/prepare.py``), so
   the set of secrets it needs is known before anything is read (KV2-INV-071);
2. each unique :class:`SecretLocation` is read once, concurrently, in a small
   bounded pool (KV2-INV-052);
3. each template whose secrets all arrived is rendered in memory;
4. its bytes go through :func:`writer.write_atomic`, which writes nothing when
   they are unchanged (KV2-INV-093);
5. after all writes, each distinct command of a template that changed runs once
   (KV2-INV-096, ``output/commands.py``).

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from kv2render.config import TemplateSpec
from kv2render.errors import Kv2RenderError, RenderError, SecretsMissing
from kv2render.logsetup import count
from kv2render.model import CommandResult as CommandResult
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.render.computed import mark_paths_from_values
from kv2render.render.prepare import PreparedTemplate as PreparedTemplate
from kv2render.render.prepare import prepare as prepare
from kv2render.render.prepare import prepare_all as prepare_all
from kv2render.render.prepare import prepare_one as prepare_one
from kv2render.store.client import SecretStore

# Templates compile in the render stage (render/prepare.py) and commands run in the output
# stage (output/commands.py); the names above are the pass's too, for its callers.

log = logging.getLogger(__name__)

# KV2-INV-391: read rounds for secrets whose paths are computed while rendering, after the
# pass's first reads. Enough for a chain of five secrets each naming the next; a template
# still missing secrets after them fails (exit 5), nothing written.
MAX_DISCOVERY_ROUNDS = 5


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
        # KV2-INV-394: a path built from a value of a secret read so far (constant ones and
        # the computed ones of earlier rounds, ``used``) is read, but shown redacted.
        read = {loc: secrets[loc] for loc in (*versions, *used) if loc in secrets}
        mark_paths_from_values(
            exc.locations, [v for v in read.values() if isinstance(v, SecretVersion)]
        )
        return RenderResult(spec, versions=versions, error=_missing_outcome(exc, secrets))
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

    Writes are fsync-bound: each file's content is fsynced, and with the default writer
    each folder once after the batch (KV2-INV-520), not once per file. Destinations are
    unique (config refuses duplicates), so the writes cannot race each other.
    """

    from kv2render.output.writer import FolderSyncBatch

    batch = FolderSyncBatch() if write is None else None
    writing = batch.write if batch is not None else write

    def one(job: tuple[PreparedTemplate, Secrets]) -> RenderResult:
        item, secrets = job
        try:
            return render_template(item, secrets, write=writing)
        except Exception as exc:  # a bug, not the user's fault: it costs this template only
            log.debug("render crashed", exc_info=True)
            error = Kv2RenderError(f"internal error {type(exc).__name__}", where=item.spec.where)
            return RenderResult(item.spec, error=error)

    try:
        return _bounded_map(one, jobs, concurrency, "kv2render-render")
    finally:
        # Also when the pass is cut short (Ctrl-C, SIGTERM's exit): a file already renamed
        # into place gets its folder fsynced as write_atomic alone would have done.
        if batch is not None:
            batch.sync()


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
    ran = run_changed_commands(results, read) if run_commands else ()
    return PassReport(results, ran, reads=reads)


def mark_computed(exc: SecretsMissing, read: Iterable[SecretVersion]) -> None:
    """Mark the locations of ``exc`` computed from a value of ``read`` (KV2-INV-394): for a
    render outside :func:`render_template` (the process supervisor's env templates)."""
    mark_paths_from_values(exc.locations, read)


def describe_versions(versions: Mapping[SecretLocation, int]) -> str:
    # str(loc) without the version: a location computed from a secret value shows redacted.
    return ", ".join(
        f"{loc.shown_mount}/{loc.shown_path}@v{v}" for loc, v in sorted(versions.items())
    )


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


def run_changed_commands(
    results: Iterable[RenderResult], secrets: Iterable[SecretVersion] = ()
) -> tuple[CommandResult, ...]:
    """Run each distinct command of the templates that wrote, once, in config order
    (KV2-INV-096, ``output/commands.py``). ``secrets``: the values the pass read, redacted
    from the commands' logged output (KV2-INV-397)."""
    written = [r.template for r in results if r.did_write]
    if all(spec.command is None for spec in written):
        return ()  # output/commands.py loads only when a template has one (KV2-NFR-520)
    from kv2render.output import commands

    return commands.run_commands(written, secrets)
