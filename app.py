"""Vireo's entry point: run the server, and prosodyctl's admin commands.

    python app.py -c CONFIG [run]
    python app.py -c CONFIG register USER HOST PASSWORD
    python app.py -c CONFIG adduser|passwd|deluser USER@HOST
    python app.py -c CONFIG check | migrate
    python app.py -c CONFIG sessions [--json]
    python app.py -c CONFIG report uploads
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import getpass  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from storage.accounts import AccountExists  # noqa: E402
from xmpp.config import Config, ConfigError, check_authentication, load_config  # noqa: E402
from xmpp.jid import InvalidJID, parse_jid  # noqa: E402
from xmpp.logconfig import configure_logging  # noqa: E402
from xmpp.server import VireoServer  # noqa: E402

log = logging.getLogger("vireo")

DEFAULT_CONFIG = "config.example.lua"


def build_server(config_path: str) -> VireoServer:
    """The composition root, shared by `run`, the gunicorn deploy and tests."""
    config = load_config(config_path)
    check_authentication(config)
    configure_logging(config)
    for warning in config.warnings:
        log.warning("%s", warning)
    return VireoServer(config)


# -- run --------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    server = build_server(args.config)
    stopping = gevent.event.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    server.start()
    pidfile = write_pidfile(server.config)
    log.info("Vireo started")
    try:
        stopping.wait()
        log.info("Shutting down")
        server.stop()
    finally:
        if pidfile:
            pidfile.unlink(missing_ok=True)
    return 0


def write_pidfile(config: Config) -> Path | None:
    """Prosody's mod_posix `pidfile`, which it autoloads on POSIX systems."""
    value = config.get_str("pidfile", None)
    if not value:
        return None
    path = config.resolve_path(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


# -- accounts -----------------------------------------------------------------------

def open_accounts(args: argparse.Namespace) -> VireoServer:
    server = build_server(args.config)
    server.db.migrate()
    return server


def split_jid(text: str, server: VireoServer) -> tuple[str, str]:
    try:
        jid = parse_jid(text)
    except InvalidJID as error:
        raise SystemExit(f"Invalid JID {text!r}: {error}") from error
    if not jid.local or jid.resource:
        raise SystemExit(f"Expected USER@HOST, got {text!r}")
    host = server.router.hosts.get(jid.domain)
    if host is None or host.is_component:
        raise SystemExit(f"The host {jid.domain!r} is not a VirtualHost in the config")
    return jid.local, jid.domain


def read_line(text: str) -> str:
    """One line of piped input (getpass would read the terminal instead)."""
    print(text, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().rstrip("\r\n")


def ask_password(prompt: Callable[[str], str] | None = None) -> str:
    """The new password, typed twice; read from stdin when it is not a terminal,
    so `printf 'pw\npw\n' | app.py adduser ...` works as with prosodyctl."""
    if prompt is None:
        prompt = getpass.getpass if sys.stdin.isatty() else read_line
    first = prompt("Enter new password: ")
    if first != prompt("Retype new password: "):
        raise SystemExit("Passwords did not match")
    if not first:
        raise SystemExit("An empty password is not allowed")
    return first


def cmd_register(args: argparse.Namespace) -> int:
    server = open_accounts(args)
    user, host = split_jid(f"{args.user}@{args.host}", server)
    try:
        server.accounts.create(host, user, args.password)
    except AccountExists:
        print(f"The account {user}@{host} already exists", file=sys.stderr)
        return 1
    return 0


def cmd_adduser(args: argparse.Namespace) -> int:
    server = open_accounts(args)
    user, host = split_jid(args.jid, server)
    if server.accounts.exists(host, user):
        print(f"The account {user}@{host} already exists", file=sys.stderr)
        return 1
    server.accounts.create(host, user, ask_password())
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    server = open_accounts(args)
    user, host = split_jid(args.jid, server)
    if not server.accounts.exists(host, user):
        print(f"No such account {user}@{host}", file=sys.stderr)
        return 1
    server.accounts.set_password(host, user, ask_password())
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    server = open_accounts(args)
    user, host = split_jid(args.jid, server)
    if not server.accounts.delete(host, user):
        print(f"No such account {user}@{host}", file=sys.stderr)
        return 1
    return 0


# -- maintenance ---------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        check_authentication(config)
    except ConfigError as error:
        where = f"{error.file}:{error.line}" if error.line else str(error.file)
        print(f"Error: {where}: {error.message}", file=sys.stderr)
        return 1
    from xmpp.tls import SniContexts

    warnings = list(config.warnings)
    contexts = SniContexts(config)
    for host in contexts.missing:
        warnings.append(f"No certificate found for {host}: STARTTLS will not be offered")
    # A configured certificate that cannot be loaded leaves its host without TLS too.
    warnings += [f"Unusable certificate for {error}" for error in contexts.errors]
    warnings += unknown_modules(config)
    for warning in warnings:
        print(f"Warning: {warning}")
    print("All checks passed" if not warnings else f"{len(warnings)} warning(s)")
    return 0


def unknown_modules(config: Config) -> list[str]:
    """The modules a host names that Vireo does not have (the server skips them)."""
    from xmpp.modules import BUILT_IN, IMPLEMENTED

    return [f'{host.label}: module "{name}" is not available in Vireo and will be skipped'
            for host in config.hosts.values() if host.enabled
            for name in host.modules() if name not in IMPLEMENTED and name not in BUILT_IN]


def cmd_migrate(args: argparse.Namespace) -> int:
    open_accounts(args)
    print("The database schema is up to date")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """Ask the running server, over its admin socket, for its live sessions."""
    import json

    from xmpp import admin

    try:
        reply = admin.request(admin.socket_path(load_config(args.config)), "sessions")
    except admin.AdminError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    sessions = reply["sessions"]
    print(json.dumps(sessions, indent=2) if args.json else admin.format_sessions(sessions))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Usage reports from the database (the running server need not be up)."""
    from xmpp.modules.http_file_share import report_uploads

    print(report_uploads(open_accounts(args)), end="")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="app.py", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=os.environ.get("VIREO_CONFIG", DEFAULT_CONFIG))
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the server (the default)")
    register = commands.add_parser("register", help="create an account: USER HOST PASSWORD")
    register.add_argument("user")
    register.add_argument("host")
    register.add_argument("password")
    for name, text in (("adduser", "create an account, asking for its password"),
                       ("passwd", "change an account's password"),
                       ("deluser", "delete an account and its data")):
        commands.add_parser(name, help=text).add_argument("jid", metavar="USER@HOST")
    commands.add_parser("check", help="check the config file")
    commands.add_parser("migrate", help="bring the database schema up to date")
    sessions = commands.add_parser("sessions", help="list the running server's live sessions")
    sessions.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report = commands.add_parser("report", help="usage reports: uploads (XEP-0363 file sharing)")
    report.add_argument("what", choices=["uploads"])
    return parser.parse_args(argv)


COMMANDS = {
    None: cmd_run, "run": cmd_run, "register": cmd_register, "adduser": cmd_adduser,
    "passwd": cmd_passwd, "deluser": cmd_deluser, "check": cmd_check, "migrate": cmd_migrate,
    "sessions": cmd_sessions, "report": cmd_report,
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as error:
        where = f"{error.file}:{error.line}" if error.line else str(error.file)
        print(f"Error in config: {where}: {error.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
