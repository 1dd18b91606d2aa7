"""argv -> exit code. Logging set-up, sub-command dispatch. No logic of its own.

    kv2render [GLOBAL] [--config PATH] [--once]  render (a daemon unless --once)
    kv2render [GLOBAL] check --config PATH        validate offline; list what would be read
    kv2render [GLOBAL] status --config PATH       print the status file; exit code = probe verdict
    kv2render [GLOBAL] dev-server [...]           the embedded KV2 dev server (dev and tests only)
    kv2render [GLOBAL] quickstart [DIR] [--out D] dev server + the quickstart example, rendered once
    kv2render [GLOBAL] convert FILE.ctmpl         print a consul-template template as Jinja2
    kv2render [GLOBAL] convert-config AGENT.hcl   print a Vault Agent config as kv2render YAML
    kv2render --version

GLOBAL is ``--log-level L`` and ``--log-format F``; they may also follow the sub-command
(KV2-INV-395). A first parse (:func:`_split_globals`) takes them out of argv wherever they
are; the rest goes to the sub-command's own parser, and the handler gets both in one
namespace (``args.log_format``). To add an option that every sub-command accepts, add it in
:func:`_global_options` (it then shows in every --help too). An option of one sub-command,
or of the render mode like ``--once`` or a ``--timeout`` for it, goes on that parser
(:func:`_run_parser`, :func:`_sub_parser`) as before.

Exit codes live on the exception classes (errors.py); only :func:`main` turns
them into an exit (STYLE.md convention 5).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from kv2render import logsetup
from kv2render.errors import ConfigError, ConfigErrors, Kv2RenderError

log = logging.getLogger("kv2render")

SUBCOMMANDS = ("check", "status", "dev-server", "quickstart", "convert", "convert-config")

_SUMMARIES = {
    "check": "validate offline; list what would be read",
    "status": "print the daemon's status file; exit code for probes",
    "dev-server": "the embedded KV2 dev server (development and tests only)",
    "quickstart": "dev server + an example, rendered once",
    "convert": "print a consul-template template as Jinja2",
    "convert-config": "print a Vault Agent config as kv2render YAML",
}

_LOG_LEVELS = ("trace", "debug", "info", "warn", "error")
_LOG_FORMATS = ("text", "json")

# KV2-INV-395: the top-level usage names every sub-command, also in a usage error.
USAGE = (
    "kv2render [--log-level L] [--log-format F] [--config PATH] [--once] [options]\n"
    "       kv2render [--log-level L] [--log-format F] {" + ",".join(SUBCOMMANDS) + "} ...\n"
    "       kv2render --version"
)


def version() -> str:
    """The installed distribution's version; the package's own when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("kv2render")
    except metadata.PackageNotFoundError:
        from kv2render._version import __version__

        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, whose usage error is one JSON log line under ``--log-format json``
    (KV2-INV-113: every stderr line is then a JSON object), exit 2 either way."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            usage = " ".join(self.format_usage().split())
            log.error("%s: %s (%s)", self.prog, message, usage)
            self.exit(2)
        super().error(message)


class _Version(argparse.Action):
    """``--version``, looked up only when asked: importing importlib.metadata costs ~50 ms
    that every ``--once`` start would pay (KV2-NFR-230)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the installed version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        sys.stdout.write(f"kv2render {version()}\n")
        parser.exit()


def _global_options(parser: argparse.ArgumentParser, *, for_help: bool = False) -> None:
    """The options every sub-command takes, before or after its name (KV2-INV-395).

    ``for_help``: a sub-command's parser lists them in its --help only; the values always
    come from :func:`_split_globals`, which took them out of argv first.
    """
    group = parser.add_argument_group("global options (before or after the sub-command)")
    group.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=argparse.SUPPRESS if for_help else os.environ.get("KV2RENDER_LOG_LEVEL", "info"),
        help="log verbosity (default: info, or $KV2RENDER_LOG_LEVEL); logs carry metadata "
        "only, never secret values",
    )
    group.add_argument(
        "--log-format",
        choices=_LOG_FORMATS,
        default=argparse.SUPPRESS if for_help else os.environ.get("KV2RENDER_LOG_FORMAT", "text"),
        help="text (default, or $KV2RENDER_LOG_FORMAT), or one JSON object per line for "
        "everything kv2render prints",
    )
    if not for_help:
        group.add_argument("--version", action=_Version)


def _split_globals(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Take the global options out of ``argv``, wherever they are; the rest keeps its order.

    ``allow_abbrev=False``: only the exact names are global, so a sub-command's own option
    that merely starts like one (``--log``...) is left to the sub-command's parser.
    """
    parser = argparse.ArgumentParser(
        prog="kv2render", usage=USAGE, add_help=False, allow_abbrev=False
    )
    _global_options(parser)
    found, rest = parser.parse_known_args(list(argv))
    # Defaults from the environment are not checked by argparse's choices.
    for name, env, choices in (
        ("log_level", "KV2RENDER_LOG_LEVEL", _LOG_LEVELS),
        ("log_format", "KV2RENDER_LOG_FORMAT", _LOG_FORMATS),
    ):
        if getattr(found, name) not in choices:
            parser.error(f"{env}: must be one of {', '.join(choices)}")
    return found, rest


def _common(parser: argparse.ArgumentParser, *, config_required: bool = False) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=None,
        required=False,
        help="config file (YAML, JSON or Vault Agent HCL); default: $KV2RENDER_CONFIG"
        + (" (required)" if config_required else ""),
    )
    _global_options(parser, for_help=True)


def _run_parser() -> _Parser:
    parser = _Parser(
        prog="kv2render",
        usage=USAGE,
        description="Render files from KV2-protocol secrets (HashiCorp Vault, OpenBao, OVHcloud "
        "Secret Manager), written atomically with mode 0600. Without a sub-command: render "
        "every template, as a daemon unless --once.",
        epilog="sub-commands (see 'kv2render SUBCOMMAND --help'):\n"
        + "\n".join(f"  {name:<16}{_SUMMARIES[name]}" for name in SUBCOMMANDS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    parser.add_argument(
        "--once",
        action="store_true",
        help="render every template once and exit (deploy scripts, init containers)",
    )
    parser.add_argument(
        "--timeout",
        metavar="DURATION",
        help="--once: give up waiting for the server after this long, exit 4 (overrides "
        "once_timeout; default 60s; 0: no deadline)",
    )
    parser.add_argument(
        "--address", metavar="URL", help="server address (overrides VAULT_ADDR and the file)"
    )
    parser.add_argument(
        "--namespace", metavar="NS", help="namespace (overrides VAULT_NAMESPACE and the file)"
    )
    parser.add_argument("--version", action=_Version)
    return parser


def _config_path(args: argparse.Namespace) -> str:
    path = args.config or os.environ.get("KV2RENDER_CONFIG")
    if not path:
        raise ConfigError(
            "no config file given",
            where="--config",
            hint="pass --config PATH or set KV2RENDER_CONFIG",
        )
    return str(path)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "address", None):
        out["vault.address"] = args.address
    if getattr(args, "namespace", None):
        out["vault.namespace"] = args.namespace
    if getattr(args, "timeout", None) is not None:
        out["once_timeout"] = args.timeout
    return out


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help, --version (0), a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2


def _main(argv: list[str]) -> int:
    options, rest = _split_globals(argv)
    logsetup.configure(options.log_level, options.log_format)
    command = rest[0] if rest and rest[0] in SUBCOMMANDS else None
    try:
        if command == "dev-server":
            from kv2render.devserver.cli import main as dev_main

            return dev_main(rest[1:])
        parser = _run_parser() if command is None else _sub_parser(command)
        parser.json_errors = options.log_format == "json"
        args = _with_globals(parser.parse_args(rest if command is None else rest[1:]), options)
        if command is None:
            return _cmd_run(args)
        handler = {
            "check": _cmd_check,
            "status": _cmd_status,
            "quickstart": _cmd_quickstart,
            "convert": _cmd_convert,
            "convert-config": _cmd_convert_config,
        }[command]
        return handler(args)
    except Kv2RenderError as exc:
        log_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say where, never what (the text could quote data)
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" at {os.path.basename(frame.filename)}:{frame.lineno}" if frame else ""
        log.critical(
            "internal error %s%s; please report it (run with --log-level debug for the stack)",
            type(exc).__name__,
            place,
            extra={"error_type": type(exc).__name__},
        )
        if log.isEnabledFor(logging.DEBUG):
            for line in traceback.format_list(traceback.extract_tb(exc.__traceback__)):
                log.debug("%s", line.rstrip())
        return 1


def _with_globals(args: argparse.Namespace, options: argparse.Namespace) -> argparse.Namespace:
    """The sub-command's arguments plus the global options (``args.log_format``, ...)."""
    for name, value in vars(options).items():
        setattr(args, name, value)
    return args


def log_error(exc: Kv2RenderError) -> None:
    """One ERROR line per problem: a ConfigErrors lists each of its errors (KV2-INV-398)."""
    for one in exc.errors if isinstance(exc, ConfigErrors) else (exc,):
        log.error("%s", one, extra={"error_type": type(one).__name__})


def _sub_parser(command: str) -> _Parser:
    parser = _Parser(prog=f"kv2render {command}")
    if command in ("check", "status"):
        _common(parser, config_required=command == "check")
        if command == "check":
            parser.description = (
                "Validate the config, every reference and every template offline (no network), "
                "and list what would be read. Exit 0 when valid, 2 when not."
            )
        else:
            parser.description = (
                "Print the daemon's status file (metadata only); the exit code says whether "
                "the files can be trusted: 0 running and fresh, 10 degraded, 11 not ready "
                "yet, 12 stale (--max-age), 13 stopped or crashed, 14 no status file, 2 usage "
                "error. A probe for Kubernetes and systemd (docs/operations.md)."
            )
            parser.add_argument(
                "--status-file",
                metavar="PATH",
                help="read this status file; the config is not needed",
            )
            parser.add_argument(
                "--max-age",
                metavar="DURATION",
                help="fail (12) when no poll succeeded for this long, e.g. 15m",
            )
    elif command == "quickstart":
        _common(parser)
        parser.description = (
            "Start the embedded dev server seeded from DIR/seed.yaml, render DIR/kv2render.yaml "
            "once into --out, and show what was written (metadata only). For trying kv2render."
        )
        parser.add_argument("directory", nargs="?", default="examples/quickstart", metavar="DIR")
        parser.add_argument("--out", default="quickstart-out", metavar="DIR", help="output folder")
    elif command == "convert":
        _common(parser)
        parser.description = "Print an equivalent Jinja2 template for a consul-template template."
        parser.add_argument("template", metavar="FILE.ctmpl")
    elif command == "convert-config":
        _common(parser)
        parser.description = "Print the kv2render YAML equivalent of a Vault Agent config."
        parser.add_argument("agent_config", metavar="AGENT.hcl|AGENT.json")
    return parser


# -- sub-commands --------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from kv2render import config as config_mod

    cfg = config_mod.load(_config_path(args), overrides=_overrides(args))
    if args.once or cfg.exit_after_auth:
        from kv2render.app import render_once

        return render_once(cfg)
    from kv2render.app import run_daemon

    return run_daemon(cfg, config_path=_config_path(args), overrides=_overrides(args))


def _cmd_check(args: argparse.Namespace) -> int:
    from kv2render.app import check

    return check(_config_path(args), fmt=args.log_format)


def _cmd_status(args: argparse.Namespace) -> int:
    from kv2render.app import print_status

    max_age = None
    if args.max_age is not None:
        from kv2render.config.values import parse_duration

        max_age = parse_duration(args.max_age, "--max-age")
    config = args.config or os.environ.get("KV2RENDER_CONFIG") or None
    return print_status(
        None if args.status_file else config,
        fmt=args.log_format,
        status_file=args.status_file,
        max_age=max_age,
    )


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from kv2render.app import quickstart

    return quickstart(args.directory, args.out, fmt=args.log_format)


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kv2render.render.ctmpl import to_jinja2

    path = Path(args.template)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}", where="convert") from None
    sys.stdout.write(to_jinja2(text, name=str(path)))
    return 0


def _cmd_convert_config(args: argparse.Namespace) -> int:
    from kv2render.config.agent import convert_config

    sys.stdout.write(convert_config(args.agent_config))
    return 0
