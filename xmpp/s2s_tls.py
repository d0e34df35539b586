"""TLS for server-to-server streams (RFC 6120 5 and 13.7.2, RFC 6125, XEP-0178).

Federation needs each handshake to carry the peer's certificate, *finish
whatever that certificate is*, and be judged afterwards: a peer with a
self-signed certificate (Prosody's default) must still get an encrypted
stream and authenticate with dialback, while one whose certificate
validates may use SASL EXTERNAL. Prosody (LuaSec) does it with a verify
callback that records the verdict and continues. Python 3.11's ssl module
has no verify callback, and none of its public tools gets there:

- As the TLS server (incoming STARTTLS), `CERT_OPTIONAL` sends a
  CertificateRequest but aborts the handshake with an alert as soon as the
  certificate the peer sends does not chain to our store: a self-signed
  peer could get neither an encrypted stream nor dialback (it does not
  retry without its certificate, and `s2s_require_encryption` forbids the
  plain stream). `CERT_NONE` sends no CertificateRequest, so the peer never
  presents a certificate and SASL EXTERNAL could never be offered. TLS 1.3
  post-handshake authentication fails the same way as `CERT_OPTIONAL`.
- As the TLS client (outgoing), `CERT_NONE` finishes the handshake but
  leaves nothing to judge: `getpeercert()` decodes only verified
  certificates (it returns `{}`), 3.11 has no access to the peer's chain
  (`get_unverified_chain` came in 3.13) and no X.509 path validation. A
  "`CERT_REQUIRED`, and reconnect with `CERT_NONE` when it fails" scheme
  would cost every untrusted peer a second connection and still leave the
  incoming side unsolved.
- pyOpenSSL has the callback, but its connections do their own socket I/O
  (they would block the gevent hub unless pumped through memory BIOs), so
  the socket ring would need a second TLS transport, and it would bring
  pyOpenSSL and cryptography as new dependencies.

So this module installs an accept-all verify callback on the OpenSSL
context through ctypes (the mode Python then reports is `CERT_OPTIONAL`,
so `getpeercert()` decodes the certificate) and reads OpenSSL's verdict,
`SSL_get_verify_result`, after the handshake. That needs two pointers out
of CPython's private structs: `PySSLContext` starts with its `SSL_CTX *`,
`PySSLSocket` with the socket weakref, its `SSL *`, then its context. The
layout has been the same in every CPython 3 release; it is checked before
use, without ever following an unchecked pointer: CPython only, a
context's pointer must round-trip through `SSL_CTX_set_verify` and
`SSL_CTX_get_verify_mode`, and the slot after an `SSL *` must hold the
socket's own context object (checked once at import and again on every
read). When a check fails, certificates are never considered valid and
every stream falls back to dialback (logged once as a warning).

Certificates are found with Prosody's lookup (xmpp.tls.CertificateFinder,
service "s2s"); the trust store is the system's plus the `cafile` of the
merged `ssl`/`s2s_ssl` tables.
"""

from __future__ import annotations

import _ssl
import ctypes
import functools
import logging
import ssl
import sys
from dataclasses import dataclass
from typing import Any

from xmpp.tls import CertificateFinder, TlsConfigError, server_context

log = logging.getLogger(__name__)

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_CLIENT_ONCE = 0x04
_X509_V_OK = 0
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class _OpenSSL:
    """The few libssl calls Python's ssl module does not expose."""

    def __init__(self) -> None:
        # Symbols resolve through the _ssl extension, so this is the very
        # libssl the interpreter's ssl module uses.
        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_get_SSL_CTX.argtypes = [ctypes.c_void_p]
        lib.SSL_get_SSL_CTX.restype = ctypes.c_void_p
        lib.SSL_get_verify_result.argtypes = [ctypes.c_void_p]
        lib.SSL_get_verify_result.restype = ctypes.c_long
        self.lib = lib
        # Kept alive for the life of the process: OpenSSL holds the pointer.
        self.accept_all = _VerifyCallback(lambda _preverify_ok, _store: 1)
        # Field offsets after the object header (see the module docstring).
        self.header = object.__basicsize__
        self.pointer = ctypes.sizeof(ctypes.c_void_p)

    def _field(self, obj: Any, index: int) -> int | None:
        """The `index`th pointer field after `obj`'s header (inside the object)."""
        return ctypes.c_void_p.from_address(id(obj) + self.header + index * self.pointer).value

    def ctx_pointer(self, context: ssl.SSLContext) -> int | None:
        return self._field(context, 0)

    def ssl_pointer(self, sslobj: Any) -> int | None:
        """The socket's `SSL *`, once its context field proves the layout (else None)."""
        if type(sslobj) is not _ssl._SSLSocket or self._field(sslobj, 2) != id(sslobj.context):
            return None
        return self._field(sslobj, 1)

    def request_and_continue(self, context: ssl.SSLContext, *, server_side: bool) -> None:
        mode = _SSL_VERIFY_PEER | (_SSL_VERIFY_CLIENT_ONCE if server_side else 0)
        self.lib.SSL_CTX_set_verify(self.ctx_pointer(context), mode, self.accept_all)

    def self_check(self) -> bool:
        """Whether both structs have the layout this module reads."""
        if (_ssl._SSLContext.__basicsize__ < self.header + self.pointer
                or _ssl._SSLSocket.__basicsize__ < self.header + 3 * self.pointer):
            return False
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        pointer = self.ctx_pointer(context)
        if not pointer or self.lib.SSL_CTX_get_verify_mode(pointer) != 0:
            return False
        self.request_and_continue(context, server_side=False)
        if context.verify_mode != ssl.CERT_OPTIONAL:
            return False
        probe = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="probe")
        ssl_pointer = self.ssl_pointer(probe._sslobj)
        return bool(ssl_pointer) and self.lib.SSL_get_SSL_CTX(ssl_pointer) == pointer

    def verify_result(self, sock: Any) -> int | None:
        """OpenSSL's verdict on the peer's chain, or None when it cannot be read safely."""
        sslobj = getattr(sock, "_sslobj", None)
        context = getattr(sslobj, "context", None)
        if sslobj is None or context is None:
            return None
        pointer = self.ssl_pointer(sslobj)
        if not pointer or self.lib.SSL_get_SSL_CTX(pointer) != self.ctx_pointer(context):
            return None
        return self.lib.SSL_get_verify_result(pointer)


def _load_openssl() -> _OpenSSL | None:
    # Elsewhere id() is no address: reading through it could crash the process.
    if sys.implementation.name == "cpython":
        try:
            openssl = _OpenSSL()
            if openssl.self_check():
                return openssl
        except (OSError, AttributeError, ValueError) as error:
            log.debug("OpenSSL verify hook unavailable: %s", error)
    log.warning("Cannot verify s2s certificates on this Python build; "
                "federation will use dialback only")
    return None


@functools.cache
def _openssl() -> _OpenSSL | None:
    """The libssl calls, loaded and checked at first use: the check makes an SSL
    context, and OpenSSL's first one costs some 1.4 MiB of memory that a server
    without TLS (no certificate, no federation) need not hold."""
    return _load_openssl()


def ssl_pointer(sock: Any) -> int | None:
    """The checked `SSL *` of TLS socket `sock`, for the few other libssl calls
    Python lacks (xmpp.channel_binding); None when it cannot be read safely."""
    sslobj = getattr(sock, "_sslobj", None)
    context = getattr(sslobj, "context", None)
    openssl = _openssl()
    if openssl is None or sslobj is None or context is None:
        return None
    pointer = openssl.ssl_pointer(sslobj)
    if not pointer or openssl.lib.SSL_get_SSL_CTX(pointer) != openssl.ctx_pointer(context):
        return None
    return pointer


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the peer's certificate proves: a trusted chain, and which names."""

    present: bool = False
    chain_valid: bool = False
    names: tuple[str, ...] = ()
    error: str | None = None

    def valid_for(self, domain: str) -> bool:
        """RFC 6125 / XEP-0178: a trusted chain whose identities cover `domain`."""
        return self.chain_valid and identity_matches(domain, self.names)

    def describe(self, domain: str) -> str:
        """Why the certificate does or does not authenticate `domain` (for logs and errors)."""
        if not self.present:
            return "was not presented"
        if not self.chain_valid:
            return f"is not trusted ({self.error or 'unknown reason'})"
        if not identity_matches(domain, self.names):
            return "is not valid for this name"
        return "is valid"


NO_CERTIFICATE = PeerCertificate()


def identity_matches(domain: str, names: tuple[str, ...]) -> bool:
    """Whether a certificate naming `names` (DNS-IDs) covers `domain`; a
    wildcard stands for exactly one leftmost label (RFC 6125 6.4.3)."""
    domain = domain.rstrip(".").lower()
    for name in names:
        name = name.rstrip(".").lower()
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.partition(".")[2] == name[2:]:
            return True
    return False


def certificate_names(decoded: dict[str, Any]) -> tuple[str, ...]:
    """The DNS-IDs of a decoded certificate (`getpeercert()`); the subject's
    common names only when it has no DNS subjectAltName (RFC 6125 6.4.4)."""
    names = tuple(value for kind, value in decoded.get("subjectAltName", ()) if kind == "DNS")
    if names:
        return names
    return tuple(value for rdn in decoded.get("subject", ()) for attr, value in rdn
                 if attr == "commonName")


def peer_certificate(sock: Any) -> PeerCertificate:
    """Judge the certificate the peer of TLS socket `sock` presented."""
    openssl = _openssl()
    if openssl is None or not hasattr(sock, "getpeercert"):
        return NO_CERTIFICATE
    try:
        if sock.getpeercert(binary_form=True) is None:
            return NO_CERTIFICATE
        decoded = sock.getpeercert() or {}
    except (ValueError, OSError):
        return NO_CERTIFICATE
    result = openssl.verify_result(sock)
    if result is None:
        return PeerCertificate(present=True, error="verification result unavailable")
    names = certificate_names(decoded)
    if result != _X509_V_OK:
        return PeerCertificate(present=True, names=names, error=f"X509 error {result}")
    return PeerCertificate(present=True, chain_valid=True, names=names)


class S2STls:
    """The s2s TLS contexts of every local host: one to accept STARTTLS
    (asking for the peer's certificate) and one to start it (presenting ours)."""

    def __init__(self, config: Any) -> None:
        self._profile = str(config.get("tls_profile", "intermediate"))
        finder = CertificateFinder(config)
        shared: dict[tuple, tuple[ssl.SSLContext, ssl.SSLContext]] = {}
        self._server: dict[str, ssl.SSLContext] = {}
        self._client: dict[str, ssl.SSLContext] = {}
        for section in config.hosts.values():
            if not section.enabled:
                continue
            try:
                settings = finder.settings(section.name, service="s2s")
                if not settings.get("certificate") or not settings.get("key"):
                    log.debug("%s: no certificate for s2s", section.name)
                    continue
                key = tuple(sorted((name, str(value)) for name, value in settings.items()))
                if key not in shared:
                    shared[key] = (self._make_server(settings), self._make_client(settings))
            except TlsConfigError as error:
                log.error("%s: s2s TLS unavailable: %s", section.name, error)
                continue
            self._server[section.name], self._client[section.name] = shared[key]
        self._anonymous_client: ssl.SSLContext | None = None

    def reload(self, config: Any) -> None:
        """Load every certificate again (SIGHUP): streams that start TLS from
        now on, either way, present the new ones."""
        fresh = S2STls(config)
        self.__dict__.update(fresh.__dict__)

    def _make_server(self, settings: dict[str, Any]) -> ssl.SSLContext:
        context = server_context(settings["certificate"], settings["key"],
                                 ciphers=settings.get("ciphers"),
                                 protocol=settings.get("protocol"),
                                 cafile=settings.get("cafile"), profile=self._profile)
        _trust(context, None)
        openssl = _openssl()
        if openssl is not None:
            openssl.request_and_continue(context, server_side=True)
        return context

    def _make_client(self, settings: dict[str, Any] | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if settings is not None:
            try:
                if settings.get("ciphers"):
                    ciphers = settings["ciphers"]
                    context.set_ciphers(":".join(ciphers) if isinstance(ciphers, list)
                                        else ciphers)
                context.load_cert_chain(settings["certificate"], settings["key"])
            except (OSError, ssl.SSLError) as error:
                raise TlsConfigError(f"cannot load {settings['certificate']}: {error}") from error
        _trust(context, settings.get("cafile") if settings else None)
        openssl = _openssl()
        if openssl is not None:
            openssl.request_and_continue(context, server_side=False)
        return context

    def server_context(self, host: str) -> ssl.SSLContext | None:
        """The context to accept STARTTLS on a stream to local `host`, if it has a certificate."""
        return self._server.get(host)

    def client_context(self, host: str) -> ssl.SSLContext:
        """The context to start TLS from local `host`: with its certificate
        when it has one, else without a client certificate."""
        context = self._client.get(host)
        if context is None:
            if self._anonymous_client is None:
                self._anonymous_client = self._make_client(None)
            context = self._anonymous_client
        return context


def _trust(context: ssl.SSLContext, cafile: Any) -> None:
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cafile:
        try:
            context.load_verify_locations(str(cafile))
        except (OSError, ssl.SSLError) as error:
            raise TlsConfigError(f"cannot load cafile {cafile}: {error}") from error
