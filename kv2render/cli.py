"""argv -> exit code. Logging set-up, sub-command dispatch. No logic of its own.

    kv2render [--config PATH] [--once] [--log-level L] [--log-format F]
                                          render (a daemon unless --once)
    kv2render check --config PATH         validate offline; list what would be read
    kv2render status --config PATH        print the daemon's status file
    kv2render dev-server [...]            the embedded KV2 dev server (development and tests only)
    kv2render quickstart [DIR] [--out D]  dev server + the quickstart example, rendered once
    kv2render convert FILE.ctmpl          print a consul-template template as Jinja2
    kv2render convert-config AGENT.hcl    print a Vault Agent config as kv2render YAML

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
from typing import Any

from kv2render import __version__, logsetup
from kv2render.errors import ConfigError, Kv2RenderError

log = logging.getLogger("kv2render")

SUBCOMMANDS = ("check", "status", "dev-server", "quickstart", "convert", "convert-config")


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
    parser.add_argument(
        "--log-level",
        choices=("trace", "debug", "info", "warn", "error"),
        default=os.environ.get("KV2RENDER_LOG_LEVEL", "info"),
        help="log verbosity (default: info); logs carry metadata only, never secret values",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("KV2RENDER_LOG_FORMAT", "text"),
        help="text, or one JSON object per line for everything kv2render prints",
    )


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kv2render",
        description="Render files from KV2-protocol secrets (HashiCorp Vault, OpenBao, OVHcloud "
        "Secret Manager), written atomically with mode 0600. Sub-commands: "
        + ", ".join(SUBCOMMANDS)
        + " (see 'kv2render SUBCOMMAND --help').",
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
    parser.add_argument("--version", action="version", version=f"kv2render {__version__}")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    if command == "dev-server":
        from kv2render.devserver.cli import main as dev_main

        return dev_main(argv[1:])
    fmt = "text"
    try:
        if command is None:
            args = _run_parser().parse_args(argv)
            fmt = args.log_format
            logsetup.configure(args.log_level, fmt)
            return _cmd_run(args)
        parser = _sub_parser(command)
        args = parser.parse_args(argv[1:])
        fmt = getattr(args, "log_format", "text")
        logsetup.configure(getattr(args, "log_level", "info"), fmt)
        handler = {
            "check": _cmd_check,
            "status": _cmd_status,
            "quickstart": _cmd_quickstart,
            "convert": _cmd_convert,
            "convert-config": _cmd_convert_config,
        }[command]
        return handler(args)
    except Kv2RenderError as exc:
        log.error("%s", exc, extra={"error_type": type(exc).__name__})
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


def _sub_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"kv2render {command}")
    if command in ("check", "status"):
        _common(parser, config_required=True)
        if command == "check":
            parser.description = (
                "Validate the config, every reference and every template offline (no network), "
                "and list what would be read. Exit 0 when valid, 2 when not."
            )
        else:
            parser.description = "Print the daemon's status file (metadata only)."
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

    return print_status(_config_path(args), fmt=args.log_format)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    from kv2render.app import quickstart

    return quickstart(args.directory, args.out, fmt=args.log_format)


def _cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kv2render.ctmpl import to_jinja2

    path = Path(args.template)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror}", where="convert") from None
    sys.stdout.write(to_jinja2(text, name=str(path)))
    return 0


def _cmd_convert_config(args: argparse.Namespace) -> int:
    from kv2render.agentconfig import convert_config

    sys.stdout.write(convert_config(args.agent_config))
    return 0
