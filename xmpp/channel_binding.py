"""TLS channel bindings (RFC 5056) for SASL: `tls-exporter` (RFC 9266),
`tls-unique` and `tls-server-end-point` (RFC 5929).

Python 3.11's ssl module gives only `tls-unique`. The other two need libssl
calls it does not expose: `SSL_export_keying_material` for the exporter and
our own certificate (`SSL_get_certificate`, whichever one SNI chose) for the
end point. They are made through ctypes on the `SSL *` that xmpp.s2s_tls
reads after checking CPython's layout; where that check fails, or the
symbols are missing, the binding is simply not offered, and neither is any
-PLUS mechanism that would need it.

Which types a connection offers:
- TLS 1.3: `tls-exporter` and `tls-server-end-point` (`tls-unique` is
  undefined there, RFC 9266 section 3).
- TLS 1.2: `tls-unique`, `tls-server-end-point`, and `tls-exporter` only with
  the extended master secret (RFC 9266 section 4.2 forbids it without).
"""

from __future__ import annotations

import _ssl
import ctypes
import hashlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

from xmpp.s2s_tls import ssl_pointer

log = logging.getLogger(__name__)

EXPORTER_LABEL = b"EXPORTER-Channel-Binding"  # RFC 9266 section 2
EXPORTER_LENGTH = 32
# Strongest first: the order -PLUS clients are told about (XEP-0440).
PREFERENCE = ("tls-exporter", "tls-unique", "tls-server-end-point")

_SSL_CTRL_GET_EXTMS_SUPPORT = 122
# RFC 5929 section 4.1: MD5 and SHA-1 signatures bind with SHA-256.
_WEAK_DIGESTS = {"md5", "sha1"}


class _LibSsl:
    """The libssl and libcrypto calls this module makes (through `_ssl`'s own libssl)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(_ssl.__file__)
        p, c_int, c_size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        lib.SSL_export_keying_material.argtypes = [p, ctypes.c_char_p, c_size, ctypes.c_char_p,
                                                   c_size, ctypes.c_char_p, c_size, c_int]
        lib.SSL_export_keying_material.restype = c_int
        lib.SSL_ctrl.argtypes = [p, c_int, ctypes.c_long, p]
        lib.SSL_ctrl.restype = ctypes.c_long
        lib.SSL_get_certificate.argtypes = [p]
        lib.SSL_get_certificate.restype = p
        lib.X509_get_signature_nid.argtypes = [p]
        lib.X509_get_signature_nid.restype = c_int
        lib.OBJ_find_sigid_algs.argtypes = [c_int, ctypes.POINTER(c_int), ctypes.POINTER(c_int)]
        lib.OBJ_find_sigid_algs.restype = c_int
        lib.OBJ_nid2sn.argtypes = [c_int]
        lib.OBJ_nid2sn.restype = ctypes.c_char_p
        lib.i2d_X509.argtypes = [p, ctypes.POINTER(ctypes.c_char_p)]
        lib.i2d_X509.restype = c_int
        self.lib = lib

    def exporter(self, ssl: int) -> bytes | None:
        out = ctypes.create_string_buffer(EXPORTER_LENGTH)
        # An empty context, not no context (RFC 9266 section 2).
        ok = self.lib.SSL_export_keying_material(ssl, out, EXPORTER_LENGTH, EXPORTER_LABEL,
                                                 len(EXPORTER_LABEL), b"", 0, 1)
        return out.raw if ok == 1 else None

    def extended_master_secret(self, ssl: int) -> bool:
        return self.lib.SSL_ctrl(ssl, _SSL_CTRL_GET_EXTMS_SUPPORT, 0, None) == 1

    def server_end_point(self, ssl: int) -> bytes | None:
        cert = self.lib.SSL_get_certificate(ssl)
        if not cert:
            return None
        digest_nid, key_nid = ctypes.c_int(0), ctypes.c_int(0)
        if not self.lib.OBJ_find_sigid_algs(self.lib.X509_get_signature_nid(cert),
                                            ctypes.byref(digest_nid), ctypes.byref(key_nid)):
            return None
        name = self.lib.OBJ_nid2sn(digest_nid.value) if digest_nid.value else None
        if name is None:
            return None  # Ed25519 and the like: RFC 5929 defines no hash for them
        digest = name.decode("ascii").lower().replace("-", "")
        if digest in _WEAK_DIGESTS:
            digest = "sha256"
        size = self.lib.i2d_X509(cert, None)
        if size <= 0 or digest not in hashlib.algorithms_available:
            return None
        buffer = ctypes.create_string_buffer(size)
        cursor = ctypes.c_char_p(ctypes.addressof(buffer))
        if self.lib.i2d_X509(cert, ctypes.byref(cursor)) != size:
            return None
        return hashlib.new(digest, buffer.raw).digest()


def _load() -> _LibSsl | None:
    if sys.implementation.name != "cpython":
        return None
    try:
        return _LibSsl()
    except (OSError, AttributeError) as error:
        log.warning("TLS channel binding beyond tls-unique unavailable: %s", error)
        return None


_LIBSSL = _load()


def tls_channel_bindings(sock: Any) -> Mapping[str, bytes]:
    """The channel bindings TLS socket `sock` offers, by type, strongest first."""
    found: dict[str, bytes] = {}
    version = sock.version() if hasattr(sock, "version") else None
    if version not in ("TLSv1.2", "TLSv1.3"):
        return found
    pointer = ssl_pointer(sock) if _LIBSSL is not None else None
    if pointer and _LIBSSL is not None and (
            version == "TLSv1.3" or _LIBSSL.extended_master_secret(pointer)):
        exporter = _LIBSSL.exporter(pointer)
        if exporter:
            found["tls-exporter"] = exporter
    if version == "TLSv1.2":
        unique = sock.get_channel_binding("tls-unique")
        if unique:
            found["tls-unique"] = unique
    if pointer and _LIBSSL is not None:
        end_point = _LIBSSL.server_end_point(pointer)
        if end_point:
            found["tls-server-end-point"] = end_point
    return {name: found[name] for name in PREFERENCE if name in found}
