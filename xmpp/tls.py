"""TLS certificates and server contexts (RFC 6120 5, RFC 7590) with Prosody 0.12's lookup.

Certificates are found the way Prosody's certmanager finds them, so an
existing Prosody `certs/` folder or `ssl = { ... }` table works unchanged:

* explicit tables: the global `ssl`, the host's own `ssl` (or, failing that,
  its parent domain's, so a component under a virtual host shares its
  certificate) and the service's `<service>_ssl` (`c2s_ssl`, `https_ssl`,
  `c2s_direct_tls_ssl`, ...);
* automatic location under `certificates` (default "certs", relative to the
  config file): an index of the certificates found there by the names they
  cover (wildcards included), then the file names `<name>.crt`+`<name>.key`,
  `<name>/fullchain.pem`+`<name>/privkey.pem` and `<name>.pem`, trying the
  parent domain when a name has none.

Tables are merged field by field from weakest to strongest, as Prosody does.
For STARTTLS (no service, "c2s", "s2s") explicit tables beat the automatic
certificate; for a direct-TLS port (any other service) the automatic
certificate beats the global tables, and the host's own tables beat both.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STARTTLS_SERVICES = frozenset({"c2s", "s2s"})
SETTINGS_FIELDS = ("certificate", "key", "cafile", "ciphers", "protocol")
_PATH_FIELDS = ("certificate", "key", "cafile")
_INDEX_DEPTH = 3

# (certificate suffix, key suffix) tried under a certificates folder; `{}` is the name.
_FILE_PATTERNS = (
    ("{}.crt", "{}.key"), ("{}/fullchain.pem", "{}/privkey.pem"), ("{}.pem", "{}.pem"),
)

# Mozilla's server-side TLS recommendations, which Prosody 0.12's `tls_profile` follows.
_INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))
_LEGACY_CIPHERS = "HIGH+kEECDH:HIGH+kEDH:HIGH:!PSK:!SRP:!3DES:!aNULL"
_TLS12, _TLS13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
# tls_profile -> (minimum version, cipher list for TLS 1.2). "old" and "legacy"
# would allow TLS 1.0 in Prosody; Vireo keeps TLS 1.2 as the floor.
_PROFILES = {
    "modern": (_TLS13, None),
    "intermediate": (_TLS12, _INTERMEDIATE_CIPHERS),
    "old": (_TLS12, _LEGACY_CIPHERS),
    "legacy": (_TLS12, _LEGACY_CIPHERS),
}
# LuaSec protocol names -> (minimum, maximum); versions below 1.2 are raised to 1.2.
_PROTOCOLS = {
    "sslv23": (_TLS12, None), "tlsv1+": (_TLS12, None), "tlsv1_1+": (_TLS12, None),
    "tlsv1_2+": (_TLS12, None), "tlsv1_3+": (_TLS13, None),
    "tlsv1_2": (_TLS12, _TLS12), "tlsv1_3": (_TLS13, _TLS13),
}


class TlsConfigError(Exception):
    """An `ssl` table or certificate file that cannot be used."""


@dataclass(frozen=True, slots=True)
class _Indexed:
    certificate: Path
    key: Path
    not_after: float


class CertificateFinder:
    """Prosody's certificate lookup over one config; indexes the folder once.

    `now` (seconds since the epoch) decides which certificates in the folder
    have expired; it defaults to the current time when the index is built.
    """

    def __init__(self, config: Any, *, now: float | None = None) -> None:
        self.config = config
        self.now = now
        self._index: dict[str, list[_Indexed]] | None = None

    def settings(self, host: str, *, service: str | None = None,
                 served_as: str | None = None) -> dict[str, Any]:
        """The merged ssl settings for `host` on `service` (see the module docstring).

        `served_as` is the name the certificate must cover when it is not the
        host's own (an `http_host`); the host's tables still apply.
        """
        host = _normalise(host)
        auto = self._automatic(_normalise(served_as or host))
        globals_ = [self._table(None, "ssl")]
        own = [self._own_table(host, "ssl")]
        if service:
            globals_.append(self._table(None, f"{service}_ssl"))
            own.append(self._own_table(host, f"{service}_ssl"))
        if service is None or service in STARTTLS_SERVICES:
            layers = [auto, *globals_, *own]
        else:
            layers = [*globals_, auto, *own]
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return merged

    def find(self, host: str, *, service: str | None = None) -> tuple[Path, Path] | None:
        """(certificate, key) for `host`, or None when there is none.

        Raises TlsConfigError for a certificate configured without a key.
        """
        return _cert_and_key(self.settings(host, service=service), host)

    def service_settings(self, service: str) -> dict[str, Any]:
        """Settings of a direct-TLS port itself, used when SNI names no known host.

        The global `ssl` and `<service>_ssl` tables over the automatic
        certificate named after the service (`<service>_certificate` folder or
        file, else `certs/<service>.crt`...).
        """
        where = self.config.get(f"{service}_certificate")
        if isinstance(where, Mapping):  # Prosody allows a table keyed by port
            where = where.get("default")
        auto = self._find_files(where if isinstance(where, str) else None, service) or {}
        merged = dict(auto)
        merged.update(self._table(None, "ssl"))
        merged.update(self._table(None, f"{service}_ssl"))
        return merged

    # -- explicit tables -------------------------------------------------------

    def _table(self, section: Any, option: str) -> dict[str, Any]:
        """An ssl table from `section`'s own options (the global section when None)."""
        raw = (self.config.globals if section is None else section.options).get(option)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise TlsConfigError(f"{option} must be a table, not {type(raw).__name__}")
        table = {}
        for field in SETTINGS_FIELDS:
            value = raw.get(field)
            if value is None:
                continue
            if field in _PATH_FIELDS:
                if not isinstance(value, str):
                    raise TlsConfigError(f"{option}.{field} must be a string")
                value = self.config.resolve_path(value)
            table[field] = value
        return table

    def _own_table(self, host: str, option: str) -> dict[str, Any]:
        """The host's own table, else its parent domain's (Prosody's mod_tls rule)."""
        for name in (host, host.partition(".")[2]):
            section = self.config.host(name) if name else None
            if section is not None and option in section.options:
                return self._table(section, option)
        return {}

    # -- automatic location ----------------------------------------------------

    def _automatic(self, host: str) -> dict[str, Any]:
        for name in _self_and_parents(host):
            found = self._from_index(name)
            if found is None:
                section = self.config.host(name)
                where = (section or self.config).get("certificate")
                found = self._find_files(where if isinstance(where, str) else None, name)
            if found is not None:
                return found
        return {}

    def _certs_dir(self) -> Path:
        return self.config.resolve_path(str(self.config.get("certificates", "certs")))

    def _find_files(self, where: str | None, name: str) -> dict[str, Path] | None:
        """Prosody's file-name lookup in `where` (a folder or a certificate file)."""
        base = self.config.resolve_path(where) if where else self._certs_dir()
        if base.is_file():
            return _pair(base, _matching_key(base))
        for crt, key in _FILE_PATTERNS:
            found = _pair(base / crt.format(name), base / key.format(name))
            if found:
                return found
        return None

    def _from_index(self, name: str) -> dict[str, Path] | None:
        if self._index is None:
            self._index = self._build_index()
        wildcard = "*." + name.partition(".")[2]
        candidates = self._index.get(name) or self._index.get(wildcard)
        if not candidates:
            return None
        best = max(candidates, key=lambda c: c.not_after)
        return {"certificate": best.certificate, "key": best.key}

    def _build_index(self) -> dict[str, list[_Indexed]]:
        now = time.time() if self.now is None else self.now
        index: dict[str, list[_Indexed]] = {}
        for path in _candidate_files(self._certs_dir(), _INDEX_DEPTH):
            entry = _read_identities(path, now)
            if entry is None:
                continue
            indexed, names = entry
            for name in names:
                index.setdefault(name, []).append(indexed)
        return index


def find_certificate(config: Any, host: str, *,
                     service: str | None = None) -> tuple[Path, Path] | None:
    """(certificate, key) for `host` on `service`, or None (Prosody 0.12's lookup).

    `service` is a port's name ("c2s_direct_tls", "https") or "c2s"/"s2s" for
    STARTTLS; its `<service>_ssl` table takes part. Raises TlsConfigError
    for a malformed `ssl` table or a certificate without a key.
    """
    return CertificateFinder(config).find(host, service=service)


def server_context(cert: Path, key: Path, *, ciphers: str | list[str] | None = None,
                   protocol: str | None = None, cafile: Path | None = None,
                   profile: str = "intermediate") -> ssl.SSLContext:
    """A server SSLContext: TLS 1.2 or later, no client certificate required.

    `profile` is Prosody's `tls_profile`; `ciphers` and `protocol` (LuaSec
    names such as "tlsv1_2+") from an `ssl` table override it. Raises
    TlsConfigError when a file cannot be loaded or an option is invalid.
    """
    if profile not in _PROFILES:
        raise TlsConfigError(f"unknown tls_profile {profile!r}")
    minimum, default_ciphers = _PROFILES[profile]
    maximum = None
    if protocol is not None:
        if protocol not in _PROTOCOLS:
            raise TlsConfigError(f"unsupported ssl protocol {protocol!r}")
        minimum, maximum = _PROTOCOLS[protocol]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if isinstance(ciphers, list | tuple):
        ciphers = ":".join(ciphers)
    try:
        if ciphers or default_ciphers:
            ctx.set_ciphers(ciphers or default_ciphers)
        ctx.load_cert_chain(cert, key)
        if cafile is not None:
            ctx.load_verify_locations(cafile)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load {cert} / {key}: {exc}") from exc
    return ctx


def _context_from(settings: Mapping[str, Any], profile: str) -> ssl.SSLContext:
    return server_context(settings["certificate"], settings["key"],
                          ciphers=settings.get("ciphers"), protocol=settings.get("protocol"),
                          cafile=settings.get("cafile"), profile=profile)


class SniContexts:
    """One SSLContext per host with a certificate, and a front context for SNI.

    For a direct-TLS port (`service` such as "https" or "c2s_direct_tls") the
    front context answers with the certificate of the host the client names
    and with `default` otherwise; for STARTTLS the caller picks
    `context_for(host)` from the stream header. For "https" a host is served
    under its `http_host` when set. Hosts without a certificate are listed in
    `missing`, unusable tables or files in `errors` ("host: reason").
    """

    def __init__(self, config: Any, *, service: str | None = None) -> None:
        self.service = service
        self._front: ssl.SSLContext | None = None
        self.missing: list[str] = []
        self.errors: list[str] = []
        self._profile = str(config.get("tls_profile", "intermediate"))
        self._by_name: dict[str, ssl.SSLContext] = {}
        self._default_settings: dict[str, Any] | None = None
        self.default: ssl.SSLContext | None = None
        finder = CertificateFinder(config)
        shared: dict[tuple, ssl.SSLContext] = {}
        first_virtual_host: tuple[ssl.SSLContext, dict[str, Any]] | None = None
        for section in config.hosts.values():
            if not section.enabled:
                continue
            name = section.name
            if service == "https":
                name = section.get("http_host") or name
            try:
                settings = finder.settings(section.name, service=service, served_as=name)
                if _cert_and_key(settings, name) is None:
                    self.missing.append(section.name)
                    continue
                key = tuple(sorted((k, str(v)) for k, v in settings.items()))
                if key not in shared:
                    shared[key] = _context_from(settings, self._profile)
            except TlsConfigError as exc:
                self.errors.append(f"{section.name}: {exc}")
                continue
            self._by_name[_normalise(name)] = shared[key]
            if first_virtual_host is None and section.kind == "VirtualHost":
                first_virtual_host = (shared[key], settings)
        self._set_default(finder, first_virtual_host)

    def _set_default(self, finder: CertificateFinder,
                     fallback: tuple[ssl.SSLContext, dict[str, Any]] | None) -> None:
        # Prosody takes any certificate it indexed when the port has none of
        # its own; the first virtual host's is the deterministic equivalent.
        if self.service is not None and self.service not in STARTTLS_SERVICES:
            try:
                settings = finder.service_settings(self.service)
                if _cert_and_key(settings, self.service) is not None:
                    self.default = _context_from(settings, self._profile)
                    self._default_settings = settings
                    return
            except TlsConfigError as exc:
                self.errors.append(f"{self.service}: {exc}")
        if fallback is not None:
            self.default, self._default_settings = fallback

    def reload(self, config: Any) -> None:
        """Load every certificate again (SIGHUP): holders of this object, and of
        its SNI front context, serve the new ones to new connections."""
        fresh = SniContexts(config, service=self.service)
        self.__dict__.update(fresh.__dict__)

    def shared_server_context(self) -> ssl.SSLContext | None:
        """server_context(), made once until the next reload (per accepted connection)."""
        if self._front is None:
            self._front = self.server_context()
        return self._front

    def context_for(self, host: str) -> ssl.SSLContext | None:
        """The context of the host (or `http_host`) named `host`, if it has one."""
        return self._by_name.get(_normalise(host))

    def server_context(self) -> ssl.SSLContext | None:
        """A fresh context for a listening port that switches certificate on SNI.

        Without a default certificate the handshake needs SNI naming a known
        host (Prosody logs "SNI will be required"). None when no host and no
        default has a certificate.
        """
        if self._default_settings is not None:
            front = _context_from(self._default_settings, self._profile)
        elif self._by_name:
            front = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            front.minimum_version = _TLS12
        else:
            return None
        front.sni_callback = self._on_sni
        return front

    def _on_sni(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                _ctx: ssl.SSLContext) -> None:
        chosen = self.context_for(server_name) if server_name else None
        if chosen is not None:
            conn.context = chosen


def _normalise(host: str) -> str:
    return host.rstrip(".").lower()


def _self_and_parents(host: str) -> Iterator[str]:
    name = host
    while name:
        yield name
        name = name.partition(".")[2]


def _cert_and_key(settings: Mapping[str, Any], host: str) -> tuple[Path, Path] | None:
    cert, key = settings.get("certificate"), settings.get("key")
    if cert is None:
        return None
    if key is None:
        raise TlsConfigError(f"no key present in SSL/TLS configuration for {host}")
    return Path(cert), Path(key)


def _pair(cert: Path, key: Path) -> dict[str, Path] | None:
    if cert.is_file() and key.is_file():
        return {"certificate": cert, "key": key}
    return None


def _matching_key(cert: Path) -> Path:
    """Prosody's guess of a certificate's key file: .crt -> .key, fullchain -> privkey."""
    name = cert.name
    if name.endswith(".crt"):
        name = name[:-4] + ".key"
    return cert.with_name(name.replace("fullchain", "privkey"))


def _candidate_files(directory: Path, depth: int) -> Iterator[Path]:
    """Files that look like certificates, sorted, skipping hidden folders."""
    if depth <= 0:
        return
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        # The default `certificates = "certs"` folder need not exist.
        log.debug("no certificate folder %s", directory)
        return
    except OSError as exc:
        log.warning("cannot index certificate folder %s: %s", directory, exc)
        return
    for entry in entries:
        if entry.is_dir():
            if not entry.name.startswith("."):
                yield from _candidate_files(Path(entry.path), depth - 1)
        elif entry.name.endswith(".crt") or "fullchain" in entry.name:
            yield Path(entry.path)


def _read_identities(path: Path, now: float) -> tuple[_Indexed, set[str]] | None:
    """The names a valid, unexpired certificate with a key next to it covers."""
    key = _matching_key(path)
    try:
        with path.open("rb") as f:
            if f.readline().strip() != b"-----BEGIN CERTIFICATE-----":
                return None
        if not key.is_file():
            return None
        # The stdlib's only PEM decoder; it reads the first (leaf) certificate.
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        log.warning("skipping certificate %s: %s", path, exc)
        return None
    not_before = ssl.cert_time_to_seconds(decoded["notBefore"])
    not_after = ssl.cert_time_to_seconds(decoded["notAfter"])
    if not not_before <= now <= not_after:
        log.info("skipping certificate %s: not valid now", path)
        return None
    names = {value.lower() for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS"}
    for rdn in decoded.get("subject", ()):
        names.update(value.lower() for attr, value in rdn if attr == "commonName")
    return _Indexed(path, key, not_after), names
