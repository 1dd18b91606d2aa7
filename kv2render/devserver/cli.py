"""``kv2render dev-server``: run the in-memory KV2 dev server in the foreground.

The lead's cli.py delegates ``kv2render dev-server ARGS`` to :func:`main`.
First lines on stdout: VAULT_ADDR=, VAULT_TOKEN= (and VAULT_CACERT= with TLS),
so ``eval "$(kv2render dev-server ... | head -n 2)"`` style scripts and tests can
read them; then one log line per request on stderr (method, path, status; never
bodies or tokens), in kv2render's log format: ``--log-level`` and ``--log-format``
work here as for every sub-command (KV2-INV-395).
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from pathlib import Path
from types import FrameType

from kv2render import logsetup
from kv2render.devserver.protocol import FLAVORS

log = logging.getLogger("kv2render.devserver")

DESCRIPTION = """\
Run an in-memory server that speaks the HashiCorp Vault KV v2 HTTP API (the KV2
protocol), like `vault server -dev`. FOR DEVELOPMENT AND TESTS ONLY: all state is
in memory and lost on exit, and it is not a security boundary (dev logins accept
any JWT listed in the seed file). A KV v2 engine is mounted at secret/.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kv2render dev-server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8200",
        metavar="HOST:PORT",
        help="address to bind (default 127.0.0.1:8200; port 0 picks a free port)",
    )
    p.add_argument(
        "--seed",
        type=Path,
        metavar="FILE",
        help="YAML seed: mounts, secrets, policies, approle/userpass/jwt/cert logins",
    )
    p.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="vault",
        help="wire flavour: vault (default), openbao, or ovh (OVHcloud Secret Manager)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS; without --tls-cert a dev CA is generated and its path printed",
    )
    p.add_argument("--tls-cert", type=Path, metavar="FILE", help="server certificate (PEM)")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="server private key (PEM)")
    p.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse TLS clients without a certificate signed by the dev CA",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address other than loopback (refused without it: this server "
        "is not a security boundary)",
    )
    p.add_argument(
        "--root-token-file",
        type=Path,
        metavar="FILE",
        help="read the root token from FILE instead of generating one",
    )
    # Taken out of argv by kv2render's cli.py already; here for --help and for
    # ``python -m kv2render.devserver.cli`` (KV2-INV-395).
    group = p.add_argument_group("global options (before or after the sub-command)")
    group.add_argument(
        "--log-level", choices=("trace", "debug", "info", "warn", "error"), default="info"
    )
    group.add_argument("--log-format", choices=("text", "json"), default="text")
    return p


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen: expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen: port must be 0-65535, got {port}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 in any inet_aton spelling (127.1), ::1, ::ffff:127.0.0.1."""
    from kv2render.authority import is_loopback_host

    return is_loopback_host(host)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    own_logging = not logsetup.configured()  # run on its own, not from kv2render's cli
    if own_logging:
        logsetup.configure(args.log_level, args.log_format)
    try:
        return _main(args)
    finally:
        if own_logging:
            logsetup.unconfigure()


def _main(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        log.error("%s", exc)
        return 2
    if not args.allow_remote and not is_loopback(host):
        # KV2-INV-381: anyone who reaches it can log in (dev logins accept any seeded JWT) and
        # read every secret in it, so listening beyond loopback must be asked for.
        log.error(
            "--listen %s: %s is not a loopback address; this in-memory dev server is not a "
            "security boundary. Pass --allow-remote to listen there anyway",
            args.listen,
            host,
        )
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        log.error("--tls-cert and --tls-key go together")
        return 2
    root_token = None
    if args.root_token_file is not None:
        try:
            root_token = args.root_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            log.error("--root-token-file: %s", exc.strerror)
            return 2
        if not root_token:
            log.error("--root-token-file: file is empty")
            return 2

    # Handlers go in before anything is printed: a script may signal as soon as it has read
    # VAULT_ADDR, and an early SIGINT must still stop cleanly. The handler only flips a flag:
    # it runs in the main thread between bytecodes, and Event.set() there could deadlock on
    # the lock that thread's own Event.wait() holds at that instant.
    stop: list[bool] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.append(True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _serve(args, host, port, root_token, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(
    args: argparse.Namespace, host: str, port: int, root_token: str | None, stop: list[bool]
) -> int:
    from kv2render.devserver.seed import SeedError
    from kv2render.devserver.server import DevServer

    def log_request(method: str, path: str, status: int) -> None:
        log.info("%s %s %d", method, path, status, extra={"method": method, "status": status})

    try:
        srv = DevServer(
            flavor=args.flavor,
            host=host,
            port=port,
            seed=args.seed,
            tls=args.tls or args.tls_cert is not None,
            cert_file=args.tls_cert,
            key_file=args.tls_key,
            require_client_cert=args.require_client_cert,
            root_token=root_token,
            on_request=log_request,
        )
        srv.start()
    except (SeedError, ValueError, RuntimeError) as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot listen on %s: %s", args.listen, exc.strerror)
        return 1

    lines = [f"VAULT_ADDR={srv.url}", f"VAULT_TOKEN={srv.root_token}"]
    if srv.ca_file is not None:
        lines.append(f"VAULT_CACERT={srv.ca_file}")
    if srv.client_cert_file is not None and srv.client_key_file is not None:
        lines.append(f"VAULT_CLIENT_CERT={srv.client_cert_file}")
        lines.append(f"VAULT_CLIENT_KEY={srv.client_key_file}")
    print("\n".join(lines), flush=True)
    if not is_loopback(host):
        log.warning(
            "listening on %s, not loopback; this in-memory dev server is not a security boundary",
            host,
        )
    log.info("%s flavour; dev/test only; Ctrl-C stops", args.flavor)

    try:
        while not stop:
            time.sleep(0.1)
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
