"""Vireo's entry point: run the server, and prosodyctl's admin commands.

    python app.py -c CONFIG [run]
    python app.py -c CONFIG register USER HOST PASSWORD
    python app.py -c CONFIG adduser|passwd|deluser USER@HOST
    python app.py -c CONFIG check | migrate
    python app.py -c CONFIG sessions [--json]
    python app.py -c CONFIG report uploads
    python app.py -c CONFIG import-prosody PROSODY_DATA_PATH
    python app.py -c CONFIG shell ['user:list("example.com")']
    python app.py -c CONFIG invite generate HOST [--reset USER]
    python app.py -c CONFIG export [FILE] | import-xep0227 FILE
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from xmpp.cluster.options import cluster_options
from xmpp.config import Config, ConfigError, check_authentication, load_config
from xmpp.jid import InvalidJID, parse_jid
from xmpp.logconfig import configure_logging

if TYPE_CHECKING:
    from storage.accounts import AccountStore
    from xmpp.server import VireoServer

log = logging.getLogger("vireo")

DEFAULT_CONFIG = "config.example.lua"


def load_checked_config(config_path: str, worker: int | None = None) -> Config:
    """The config, refused when it names an authentication Vireo lacks, with
    logging set up as it says and its warnings logged; `worker` is this
    process's index under `run --workers`."""
    config = load_config(config_path)
    check_authentication(config)
    if worker is not None:
        from xmpp.workers import become_worker

        become_worker(config, worker)
    configure_logging(config)
    for warning in config.warnings:
        log.warning("%s", warning)
    return config


def build_server(config_path: str, worker: int | None = None) -> VireoServer:
    """The composition root, shared by `run`, the gunicorn deploy and tests."""
    # Here and not at import: the account commands run without gevent. First,
    # before the server's imports (ssl, psycopg) can see unpatched modules.
    import gevent
    from gevent import monkey

    monkey.patch_all()
    # Nothing reads a greenlet's spawning tree; recording it walks the spawner's stack
    # on every spawn (each flush of a session's output fed by another greenlet).
    gevent.config.track_greenlet_tree = False
    from xmpp.server import VireoServer

    return VireoServer(load_checked_config(config_path, worker))


# -- run --------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", None)
    if workers is not None:
        return run_workers(args.config, workers)
    server = build_server(args.config, getattr(args, "worker", None))
    import gevent

    from xmpp.heap import freeze_startup_objects

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stopping.set)
    # Prosody's mod_posix (Vireo's is built in).
    gevent.signal_handler(signal.SIGHUP, server.reload)
    for signum in (signal.SIGUSR1, signal.SIGUSR2):
        gevent.signal_handler(signum, server.signal_received, signal.Signals(signum).name)
    # Written before the ports open, as Prosody does: whoever sees the server
    # answer can find its pid.
    pidfile = write_pidfile(server.config)
    try:
        server.start()
        freeze_startup_objects()
        log.info("Vireo started")
        server.stopping.wait()
        log.info("Shutting down")
        server.stop()
    finally:
        if pidfile:
            pidfile.unlink(missing_ok=True)
    return 0


def run_workers(config_path: str, count: int) -> int:
    """`run --workers N`: migrate once, then supervise N worker processes."""
    from storage.db import Database, database_url
    from xmpp.workers import check_workers, default_count, supervise

    count = count or default_count()
    config = load_config(config_path)
    check_authentication(config)
    check_workers(config, count)
    configure_logging(config)
    database = Database(database_url(config))
    try:
        database.migrate()  # once, not raced by the workers
    finally:
        database.close()
    pidfile = write_pidfile(config)
    try:
        return supervise([sys.executable, str(Path(__file__).resolve()), "-c", config_path,
                          "run"], count)
    finally:
        if pidfile:
            pidfile.unlink(missing_ok=True)


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


class AccountCommands(Protocol):
    """What the account commands ask of storage.accounts.AccountStore or
    storage.account_rows.AccountRows."""

    def exists(self, host: str, username: str) -> bool: ...
    def create(self, host: str, username: str, password: str) -> None: ...
    def delete(self, host: str, username: str) -> bool: ...


def open_account_commands(args: argparse.Namespace, jid: str) -> tuple[AccountCommands, str, str]:
    """The accounts, and the user and host of `jid`: over plain DB-API when the
    schema is current (a fraction of the start-up), else through the server's
    SQLAlchemy store, which migrates first."""
    from storage import account_rows
    from storage.dburl import database_url

    config = load_checked_config(args.config)
    user, host = split_jid(jid, config)
    try:
        rows = account_rows.connect(database_url(config))
    except ValueError:
        rows = None  # a storage option the server start reports
    if rows is not None:
        return rows, user, host
    return open_accounts(args).accounts, user, host


def split_jid(text: str, config: Config) -> tuple[str, str]:
    try:
        jid = parse_jid(text)
    except InvalidJID as error:
        raise SystemExit(f"Invalid JID {text!r}: {error}") from error
    if not jid.local or jid.resource:
        raise SystemExit(f"Expected USER@HOST, got {text!r}")
    if jid.domain not in {host.name for host in config.virtual_hosts()}:
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
    from storage.account_material import AccountExists

    accounts, user, host = open_account_commands(args, f"{args.user}@{args.host}")
    try:
        accounts.create(host, user, args.password)
    except AccountExists:
        print(f"The account {user}@{host} already exists", file=sys.stderr)
        return 1
    return 0


def cmd_adduser(args: argparse.Namespace) -> int:
    accounts, user, host = open_account_commands(args, args.jid)
    if accounts.exists(host, user):
        print(f"The account {user}@{host} already exists", file=sys.stderr)
        return 1
    accounts.create(host, user, ask_password())
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    # The server path, not account_rows: the host's modules must hear of it.
    server = open_accounts(args)
    user, host = split_jid(args.jid, server.config)
    if not server.accounts.exists(host, user):
        print(f"No such account {user}@{host}", file=sys.stderr)
        return 1
    # Through the host, so its modules hear of it (FAST tokens end).
    server.core.users(host).set_password(user, ask_password())
    return 0


def cmd_deluser(args: argparse.Namespace) -> int:
    accounts, user, host = open_account_commands(args, args.jid)
    if not accounts.delete(host, user):
        print(f"No such account {user}@{host}", file=sys.stderr)
        return 1
    return 0


# -- maintenance ---------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        check_authentication(config)
        cluster_options(config)
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
    from xmpp.modules import unknown_modules

    warnings += [f'{host}: module "{name}" is not available in Vireo and will be skipped'
                 for host, name in unknown_modules(config)]
    for warning in warnings:
        print(f"Warning: {warning}")
    for note in stored_scram_report(config):
        print(f"Note: {note}")
    print("All checks passed" if not warnings else f"{len(warnings)} warning(s)")
    return 0


def cmd_import_prosody(args: argparse.Namespace) -> int:
    """Move Prosody's internal storage in; exit 1 when an account failed."""
    from storage.prosody_import import ProsodyImporter, hosts_of

    server = open_accounts(args)
    try:
        report = ProsodyImporter(server.db, hosts_of(server.config)).run(Path(args.path))
    except FileNotFoundError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    for line in report.lines() + scram_report(server.accounts, server.config):
        print(line)
    return 1 if report.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """The VirtualHosts' accounts and data as one XEP-0227 document."""
    from storage.prosody_import import hosts_of
    from storage.userdata import owners, read_user
    from storage.xep0227 import is_room, server_data

    server = open_accounts(args)
    # Components too: a MUC component's rooms are exported.
    hosts = {host: [read_user(server.db, host, user) for user in owners(server.db, host) if user]
             for host in hosts_of(server.config)}
    document, left_out = server_data(hosts)
    if args.file:
        Path(args.file).write_text(document, encoding="utf-8")
    else:
        sys.stdout.write(document)
    accounts = sum(1 for users in hosts.values() for data in users if data.material)
    rooms = sum(1 for users in hosts.values() for data in users if is_room(data))
    print(f"Exported {accounts} account(s), {rooms} room(s)", file=sys.stderr)
    for store, owners_left in sorted(left_out.items()):
        print(f"Not in XEP-0227 form, left out: {store} of {len(owners_left)} account(s)",
              file=sys.stderr)
    return 0


def cmd_import_xep0227(args: argparse.Namespace) -> int:
    """Accounts and data from a XEP-0227 file; exit 1 when an account failed."""
    from xml.etree.ElementTree import ParseError

    from storage.prosody_import import ImportReport, hosts_of
    from storage.stores import StoreFactory
    from storage.userdata import write_user
    from storage.xep0227 import is_room, read_server_data

    server = open_accounts(args)
    hosts = hosts_of(server.config)  # name -> whether it is a VirtualHost
    report = ImportReport()
    try:
        for host, name, data in read_server_data(args.file):
            label = f"{name}@{host}"
            room = not isinstance(data, Exception) and is_room(data)
            if host not in hosts or not (hosts[host] or room):
                report.skipped.append((label, "not a host in the config" if room
                                       else "not a VirtualHost in the config"))
            elif isinstance(data, Exception):
                report.failed.append((label, f"{args.file}: {data}"))
            elif write_user(server.db, data):
                if room:  # listed with the service's persistent rooms
                    StoreFactory(server.db).open(host, "persistent", "map").set(
                        None, name, True)
                report.imported.append((label, data.counts()))
            else:
                report.present.append(label)
    except (OSError, ParseError) as error:
        print(f"Error: {args.file}: {error} (accounts before it were imported)",
              file=sys.stderr)
        report.failed.append((args.file, str(error)))
    for line in report.lines() + scram_report(server.accounts, server.config):
        print(line)
    return 1 if report.failed else 0


def scram_report(accounts: AccountStore, config: Config) -> list[str]:
    """How many accounts still lack SCRAM-SHA-256 material, per VirtualHost."""
    lines = []
    for host in config.virtual_hosts():
        lacking = accounts.lacking_sha256(host.name)
        if lacking:
            lines.append(f"{host.name}: {lacking} account(s) have SCRAM-SHA-1 material only: "
                         f"SCRAM-SHA-256 is offered once each has logged in with PLAIN")
    return lines


def stored_scram_report(config: Config) -> list[str]:
    """scram_report on the configured database, when it is reachable and migrated."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from storage.accounts import AccountStore
    from storage.db import Database, database_url

    try:
        url = make_url(database_url(config))
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return []  # no database yet (and check creates none)
        db = Database(url.render_as_string(hide_password=False))
    except (ValueError, RuntimeError):
        return []  # the storage options are reported when the server starts
    try:
        return scram_report(AccountStore(db), config)
    except SQLAlchemyError:
        return []  # no database yet, or not migrated: no accounts to report on
    finally:
        db.close()


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


def cmd_shell(args: argparse.Namespace) -> int:
    """Prosody's `prosodyctl shell`: one command given as arguments, or a prompt."""
    from xmpp import admin

    path = admin.socket_path(load_config(args.config))

    def run_line(line: str) -> bool:
        try:
            reply = admin.request(path, "shell", line=line)
        except admin.AdminError as error:
            print(f"! {error}", file=sys.stderr)
            return False
        for text in reply.get("output", []):
            print(f"| {text}")
        print(reply.get("result", ""))
        return str(reply.get("result", "")).startswith("OK")

    if args.line:
        return 0 if run_line(" ".join(args.line)) else 1
    import readline  # noqa: F401 - line editing and history for input()

    print("Vireo admin shell: commands as in prosodyctl shell (help; quit to leave)")
    while True:
        try:
            line = input("prosody> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("quit", "exit", "bye"):
            return 0
        if line:
            run_line(line)


def cmd_invite(args: argparse.Namespace) -> int:
    """prosodyctl mod_invites generate HOST [--reset USER | --admin | --role ROLE...]:
    print a new invite."""
    from storage.stores import StoreFactory
    from xmpp.modules.invites import STORE, service_for_store

    server = open_accounts(args)
    host = server.router.hosts.get(args.host)
    if host is None or host.is_component:
        print(f"The host {args.host!r} is not a VirtualHost in the config", file=sys.stderr)
        return 1
    invites = service_for_store(args.host, StoreFactory(server.db).open(args.host, STORE, "map"),
                                host.config, server.now, host.modules)
    if args.reset and args.roles:
        print("--role/--admin and --reset are mutually exclusive", file=sys.stderr)
        return 2
    if args.reset:
        if not server.accounts.exists(args.host, args.reset):
            print(f"No such account {args.reset}@{args.host}", file=sys.stderr)
            return 1
        invite = invites.create_account_reset(args.reset)
    else:
        # Prosody 0.12 keeps the roles as a set; the account made with it gets them.
        invite = invites.create_account(additional_data={
            "roles": dict.fromkeys(args.roles, True)} if args.roles else None)
    print(invite.get("landing_page") or invite["uri"])
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
    run = commands.add_parser("run", help="run the server (the default)")
    run.add_argument("--workers", type=int, nargs="?", const=0, metavar="N",
                     help="N processes on the same ports, each a cluster node "
                          "(needs the cluster option; N omitted or 0: the core count)")
    run.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by --workers
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
    invite = commands.add_parser("invite", help="invitations (prosodyctl mod_invites): "
                                                "generate HOST [--reset USER | --admin | "
                                                "--role ROLE...]")
    invite.add_argument("action", choices=["generate"])
    invite.add_argument("host")
    invite.add_argument("--reset", metavar="USER", help="an invite to reset USER's password")
    invite.add_argument("--admin", dest="roles", action="append_const", const="prosody:admin",
                        default=[], help="the new account is an admin (--role prosody:admin)")
    invite.add_argument("--role", dest="roles", action="append", metavar="ROLE",
                        help="grant ROLE to the new account (may be given again)")
    export = commands.add_parser("export", help="accounts and data as XEP-0227 XML")
    export.add_argument("file", nargs="?", help="write here instead of to stdout")
    import227 = commands.add_parser("import-xep0227", help="accounts and data from XEP-0227 XML")
    import227.add_argument("file")
    shell = commands.add_parser("shell", help="the admin console of the running server "
                                              "(prosodyctl shell)")
    shell.add_argument("line", nargs="*", metavar="COMMAND",
                       help='one command, e.g. \'user:list("example.com")\'')
    importer = commands.add_parser("import-prosody",
                                   help="move accounts and data from Prosody's data_path")
    importer.add_argument("path", metavar="PROSODY_DATA_PATH")
    return parser.parse_args(argv)


COMMANDS = {
    None: cmd_run, "run": cmd_run, "register": cmd_register, "adduser": cmd_adduser,
    "passwd": cmd_passwd, "deluser": cmd_deluser, "check": cmd_check, "migrate": cmd_migrate,
    "sessions": cmd_sessions, "report": cmd_report, "import-prosody": cmd_import_prosody,
    "shell": cmd_shell, "invite": cmd_invite, "export": cmd_export,
    "import-xep0227": cmd_import_xep0227,
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
