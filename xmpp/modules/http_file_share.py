"""XEP-0363 HTTP File Upload service (Prosody 0.12's mod_http_file_share).

Load it as `Component "upload.example.com" "http_file_share"` (or in a
VirtualHost's modules_enabled). It answers slot requests, advertises itself
in disco (identity store/file, feature urn:xmpp:http:upload:0, an XEP-0128
form with max-file-size), serves uploads and downloads at `/file_share`
(http_apps.file_share.views) and prunes expired files with a periodic job.

With `http_file_share_base_url` an external service stores the files: slots
point there, and there are no local HTTP routes and no local expiry.
`http_file_share_path` puts the files in a directory of its own: one that
several cluster nodes share, so any of them stores or serves any file (the
slots are in the shared database, the signing secret too when not configured).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement

import gevent

from http_apps.file_share.policy import (
    DAILY_QUOTA_FACTOR,
    DAY,
    DEFAULT_EXPIRES_AFTER,
    DEFAULT_SAFE_TYPES,
    DEFAULT_SIZE_LIMIT,
    MAX_SIZE,
    Policy,
    Refusal,
    SlotRequest,
)
from http_apps.file_share.service import MODULE_NAME, FileShare, store_directory
from http_apps.provider import HttpProvider
from http_apps.urls import http_url
from storage.kept_secret import kept_secret
from xmpp import namespaces as ns
from xmpp.auth_throttle import failure_throttle
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext

NS = ns.HTTP_UPLOAD
REQUEST = f"{{{NS}}}request"
HTTP_APP = "file_share"
DEFAULT_PATH = "/file_share"
#: Prosody 0.12 prunes one second after start, then hourly.
DEFAULT_PRUNE_INTERVAL = 3600.0
FIRST_PRUNE_DELAY = 1.0


def read_policy(m: ModuleContext) -> Policy:
    """The service's Policy from Prosody's options (names and defaults)."""
    config = m.config
    size_limit = config.get_int("http_file_share_size_limit", DEFAULT_SIZE_LIMIT, min=0,
                                max=MAX_SIZE)
    return Policy(
        size_limit=size_limit,
        daily_quota=config.get_int("http_file_share_daily_quota",
                                   size_limit * DAILY_QUOTA_FACTOR, min=0),
        global_quota=config.get_int("http_file_share_global_quota", None, min=0),
        allowed_types=frozenset(map(str, config.get_list("http_file_share_allowed_file_types"))),
        safe_types=frozenset(map(str, config.get_list("http_file_share_safe_file_types",
                                                      DEFAULT_SAFE_TYPES))),
        access=frozenset(map(str, config.get_list("http_file_share_access"))),
        local_hosts=frozenset(m.hosts()),
        expires_after=config.get_number("http_file_share_expires_after", DEFAULT_EXPIRES_AFTER),
    )


def upload_form(size_limit: int) -> Element:
    """The XEP-0128 form of XEP-0363 section 4: the maximum file size."""
    form = Element(f"{{{ns.DATA_FORMS}}}x", {"type": "result"})
    for var, kind, value in (("FORM_TYPE", "hidden", NS),
                             ("max-file-size", "text-single", str(size_limit))):
        field = SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": var, "type": kind})
        SubElement(field, f"{{{ns.DATA_FORMS}}}value").text = value
    return form


def setup(m: ModuleContext) -> None:
    config = m.config
    policy = read_policy(m)
    external_url = config.get_str("http_file_share_base_url", None)
    host = m.host.name

    def base_url() -> str:
        return external_url or http_url(config.config, host, HTTP_APP, DEFAULT_PATH)

    shared_path = config.get_str("http_file_share_path", None)
    configured_secret = config.get_str("http_file_share_secret", None)
    share = FileShare(
        host=host, policy=policy, secret=configured_secret or "",
        store=m.typed_store("uploads"),
        directory=(config.config.resolve_path(shared_path) if shared_path else
                   store_directory(config.config.resolve_path(
                       config.get_str("data_path", "data")), host)),
        base_url=base_url, external=external_url is not None, clock=m.now,
        throttle=failure_throttle(config, f"http_file_share:{host}"))

    def starting(event: Any) -> None:
        # Kept in the database when not configured (read once it is migrated):
        # every node of a cluster, and the process after a restart, takes the
        # tokens another one signed.
        share.secret = kept_secret(configured_secret, m.open_store())

    m.hook("server-starting", starting, 10)
    # The web admin lists and deletes uploads through the service.
    m.shared(f"file_share:{host}", lambda: share)
    m.depends("disco")
    m.add_identity("store", "file", config.get_str("name", "HTTP File Upload"))
    m.add_feature(NS)
    m.add_extension(upload_form(policy.size_limit))
    m.hook_iq("get", REQUEST, lambda request: slot_request(m, share, request))

    if share.external:
        m.hook("server-started", lambda event: m.log.info("Slots point to the external upload "
                                                    "service at %s", external_url))
        return
    m.provides("http", HttpProvider(
        name=HTTP_APP, host=host, make_blueprint=lambda: _blueprint(share),
        default_path=DEFAULT_PATH, methods=("GET", "HEAD", "PUT", "OPTIONS"),
        max_body_size=policy.size_limit,
        cors={"enabled": True, "credentials": True, "headers": {"Authorization": True}}))
    interval = config.get_number("vireo_http_file_share_prune_interval",
                                 DEFAULT_PRUNE_INTERVAL, min=0.01)
    m.hook("server-starting", lambda event: share.recover())
    m.hook("server-started", lambda event: m.log.info("Serving uploads at %s", base_url()))
    if policy.expires_after >= 0:
        m.add_periodic(interval, lambda: share.prune(pause=gevent.sleep),
                       first_delay=FIRST_PRUNE_DELAY, what="Pruning expired uploads")


def _blueprint(share: FileShare) -> Any:
    """The service's routes, made at the first request for them: with Flask, which
    a server need not load before (http_apps.flask_host)."""
    from http_apps.file_share import views

    return views.make_blueprint(share)


def slot_request(m: ModuleContext, share: FileShare, request: IqRequest) -> Element:
    """Answer <request filename= size= content-type=/> with a slot, or the policy's error."""
    payload = request.payload
    try:
        uploader = str(parse_jid(request.stanza.get("from", "")).bare)
    except InvalidJID as error:
        raise StanzaError("forbidden", error_type="auth") from error
    try:
        issued = share.issue_slot(SlotRequest(uploader, payload.get("filename"),
                                              payload.get("size"), payload.get("content-type")))
    except Refusal as refusal:
        extra = None
        if refusal.max_file_size is not None:
            extra = Element(f"{{{NS}}}file-too-large")
            SubElement(extra, f"{{{NS}}}max-file-size").text = str(refusal.max_file_size)
        raise StanzaError(refusal.condition, refusal.text, refusal.error_type, extra) from None
    m.log.info("Issuing upload slot to %s for %s bytes", uploader, payload.get("size"))
    slot = Element(f"{{{NS}}}slot")
    put = SubElement(slot, f"{{{NS}}}put", {"url": issued.put_url})
    for name, value in issued.headers.items():
        SubElement(put, f"{{{NS}}}header", {"name": name}).text = value
    SubElement(slot, f"{{{NS}}}get", {"url": issued.get_url})
    return slot


# -- admin ----------------------------------------------------------------------------

def report_uploads(server: Any) -> str:
    """`app.py report uploads`: each service's URL, then usage per user and per host.

    Columns: slots issued, files stored, bytes of all slots (what quotas count),
    and slots and bytes issued in the last 24 hours.
    """
    lines = []
    for host in server.router.hosts.values():
        if MODULE_NAME not in host.modules:
            continue
        external = host.config.get_str("http_file_share_base_url", None)
        url = external or http_url(server.config, host.name, HTTP_APP, DEFAULT_PATH)
        lines.append(f"{host.name}: {'external service ' if external else ''}{url}")
    since = datetime.fromtimestamp(server.now() - DAY, UTC)
    rows = server.uploads.usage(since)
    header = ("HOST", "USER", "SLOTS", "FILES", "BYTES", "SLOTS_24H", "BYTES_24H")
    table = [header]
    for row in sorted(rows, key=lambda r: (r.host, r.uploader is None, r.uploader or "")):
        table.append((row.host, row.uploader or "*", str(row.slots), str(row.files),
                      str(row.bytes), str(row.slots_24h), str(row.bytes_24h)))
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    lines.append("")
    for cells in table:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths, strict=True))))
    if len(table) == 1:
        lines.append("(no uploads)")
    return "\n".join(lines) + "\n"
