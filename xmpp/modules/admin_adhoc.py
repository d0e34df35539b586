"""XEP-0133 Service Administration over ad-hoc commands (Prosody's
mod_admin_adhoc), for the host's `admins`: add a user, delete users, change a
password, list the online users, shut the service down (after the form's
`delay`, once the `announcement` went to the online users of every host)."""

from __future__ import annotations

from collections.abc import Callable

from storage.accounts import AccountExists
from xmpp import namespaces as ns
from xmpp.dataforms import Field, build_form
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.adhoc import AdhocCommand, AdhocRequest, AdhocResult, add_command
from xmpp.modules.announce import headline, send_to_online

ADMIN = ns.ADMIN
# Prosody's choices; any other whole number of seconds is taken too.
SHUTDOWN_DELAYS = [("5 seconds", "5"), ("30 seconds", "30"), ("60 seconds", "60"),
                   ("90 seconds", "90"), ("2 minutes", "120"), ("3 minutes", "180"),
                   ("4 minutes", "240"), ("5 minutes", "300")]
DEFAULT_SHUTDOWN_DELAY = "5"
MAX_SHUTDOWN_DELAY = 86400  # a day: a longer wait is a mistake, not a plan


def ask(title: str, *fields: Field) -> AdhocResult:
    return AdhocResult("executing", build_form("form", list(fields), title=title,
                                               form_type_ns=ADMIN))


def done(note: str) -> AdhocResult:
    return AdhocResult(note=note)


def failed(note: str) -> AdhocResult:
    return AdhocResult(note=note, note_type="error")


class AdminCommands:
    def __init__(self, m: ModuleContext) -> None:
        self.m = m

    def _local(self, text: str) -> str | None:
        """The username of a JID of this host, or None."""
        try:
            jid = parse_jid(text)
        except InvalidJID:
            return None
        return jid.local if jid.domain == self.m.host.name and jid.local else None

    def add_user(self, request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return ask("Adding a User",
                       Field("accountjid", "jid-single", "The Jabber ID for the account to be "
                             "added", required=True),
                       Field("password", "text-private", "The password for this account"),
                       Field("password-verify", "text-private", "Retype password"))
        username = self._local(request.value("accountjid"))
        password = request.value("password")
        if username is None:
            return failed("You can only create users on " + self.m.host.name + ".")
        if not password or password != request.value("password-verify"):
            return failed("Passwords don't match")
        try:
            self.m.users.create(username, password)
        except (AccountExists, InvalidJID):
            return failed("Account already exists")
        self.m.log.info("Created new account %s@%s", username, self.m.host.name)
        return done("Account successfully created")

    def change_password(self, request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return ask("Changing a User Password",
                       Field("accountjid", "jid-single", "The Jabber ID for this account",
                             required=True),
                       Field("password", "text-private", "The password for this account",
                             required=True))
        username = self._local(request.value("accountjid"))
        password = request.value("password")
        if username is None or not password or not self.m.users.set_password(
                username, password):
            return failed("User does not exist")
        return done("Password successfully changed")

    def delete_users(self, request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return ask("Deleting a User",
                       Field("accountjids", "jid-multi", "The Jabber ID(s) to delete",
                             required=True))
        deleted, failures = [], []
        for text in (request.values or {}).get("accountjids", []):
            username = self._local(text.strip())
            if username is not None and self.m.users.exists(username):
                for session in list(self.m.sessions(parse_jid(text.strip()).bare).values()):
                    session.close()
                self.m.users.delete(username)
                deleted.append(text.strip())
            else:
                failures.append(text.strip())
        if failures:
            return failed("The following accounts could not be deleted:\n"
                          + "\n".join(failures)
                          + ("\nThe following accounts were successfully deleted:\n"
                             + "\n".join(deleted) if deleted else ""))
        return done("The following accounts were successfully deleted:\n" + "\n".join(deleted))

    def online_users(self, request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return ask("Getting List of Online Users",
                       Field("max_items", "list-single", "Maximum number of users",
                             options=[(n, n) for n in ("25", "50", "75", "100", "150", "200",
                                                       "all")]),
                       Field("details", "boolean", "Show details"))
        limit = request.value("max_items")
        details = request.value("details") in ("1", "true")
        users = sorted(self.m.online_users().items(), key=lambda item: str(item[0]))
        if limit.isdigit():
            users = users[:int(limit)]
        lines = []
        for bare, resources in users:
            lines.append(str(bare))
            if details:
                lines += [f" - {resource}" for resource in sorted(resources)]
        return AdhocResult(form=build_form("result", [
            Field("onlineuserjids", "text-multi", "The list of all online users",
                  values=lines)], form_type_ns=ADMIN))

    def shutdown(self, request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return ask("Shutting Down the Service",
                       Field("delay", "list-single", "Time delay before shutting down",
                             values=[DEFAULT_SHUTDOWN_DELAY], options=SHUTDOWN_DELAYS),
                       Field("announcement", "text-multi", "Announcement"))
        delay = shutdown_delay(request.value("delay") or DEFAULT_SHUTDOWN_DELAY)
        if delay is None:
            return failed(f"The delay must be a whole number of seconds up to {MAX_SHUTDOWN_DELAY}")
        announcement = "\n".join((request.values or {}).get("announcement", [])).strip()
        if announcement:  # the whole server stops: every host's users are told
            send_to_online(self.m, headline("Server is shutting down", announcement),
                           every_host=True)
        request_shutdown: Callable[[str | None], None] = self.m.service("shutdown")
        reason = f"Shutdown by adhoc command ({request.sender})"
        self.m.log.info("%s in %d seconds", reason, delay)
        self.m.add_timer(delay, lambda: request_shutdown(reason))
        return done("Server is about to shut down")


def shutdown_delay(text: str) -> int | None:
    """The `delay` field in seconds, or None unless a whole number up to a day."""
    try:
        seconds = int(text)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= MAX_SHUTDOWN_DELAY else None


def setup(m: ModuleContext) -> None:
    commands = AdminCommands(m)
    for node, name, handler in (
            ("add-user", "Add User", commands.add_user),
            ("change-user-password", "Change User Password", commands.change_password),
            ("delete-user", "Delete User", commands.delete_users),
            ("get-online-users-list", "Get List of Online Users", commands.online_users),
            ("shutdown", "Shut Down Service", commands.shutdown)):
        add_command(m, AdhocCommand(f"{ADMIN}#{node}", name, handler, "admin"))
