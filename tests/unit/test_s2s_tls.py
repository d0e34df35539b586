"""s2s certificates (RFC 6125, XEP-0178): names, and handshakes that finish whatever the peer's
certificate is, judged afterwards. In-memory TLS (MemoryBIO), no sockets."""

from __future__ import annotations

import ssl
from types import SimpleNamespace

import pytest

from tests.certs import make_self_signed
from xmpp import s2s_tls
from xmpp.config import load_config
from xmpp.s2s_tls import (
    NO_CERTIFICATE,
    S2STls,
    certificate_names,
    identity_matches,
    peer_certificate,
)


def test_identity_matching_rules():
    assert identity_matches("a.example", ("A.Example.",))
    assert identity_matches("chat.a.example", ("*.a.example",))
    assert not identity_matches("a.example", ("*.a.example",))
    assert not identity_matches("x.chat.a.example", ("*.a.example",))
    assert not identity_matches("b.example", ("a.example",))
    assert not identity_matches("a.example", ())


def test_names_prefer_dns_subject_alt_names_over_the_common_name():
    decoded = {"subject": ((("commonName", "cn.example"),),),
               "subjectAltName": (("DNS", "a.example"), ("othername", "<unsupported>"))}
    assert certificate_names(decoded) == ("a.example",)
    assert certificate_names({"subject": ((("commonName", "cn.example"),),)}) == ("cn.example",)


def tls_for(tmp_path, host, cert, key, cafile=None) -> S2STls:
    """S2STls over a real config: `host` with its certificate, trusting `cafile`."""
    path = tmp_path / f"{host}.cfg.lua"
    trust = f', cafile = "{cafile}"' if cafile else ""
    path.write_text(f'ssl = {{ certificate = "{cert}", key = "{key}"{trust} }}\n'
                    f'VirtualHost "{host}"\n')
    return S2STls(load_config(path))


def handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, server_name: str):
    """Run a TLS handshake between two in-memory endpoints; return (client, server) objects."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, obj, out, peer_in in (("client", client, c_out, s_in),
                                        ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            # TLS 1.3: the server sees the client's certificate after one more read.
            s_in.write(c_out.read())
            return client, server
    raise AssertionError("handshake did not finish")


@pytest.fixture
def certs(tmp_path):
    return {name: make_self_signed(tmp_path, name) for name in ("a.example", "b.example")}


def test_untrusted_certificates_still_complete_the_handshake(tmp_path, certs):
    a = tls_for(tmp_path, "a.example", *certs["a.example"])
    b = tls_for(tmp_path, "b.example", *certs["b.example"])
    client, server = handshake(a.client_context("a.example"), b.server_context("b.example"),
                               "b.example")
    seen_by_a, seen_by_b = peer_certificate(client), peer_certificate(server)
    for seen, name in ((seen_by_a, "b.example"), (seen_by_b, "a.example")):
        assert seen.present and not seen.chain_valid
        assert seen.names == (name,)
        assert not seen.valid_for(name)
        assert seen.describe(name).startswith("is not trusted")


def test_trusted_certificates_validate_for_their_names_only(tmp_path, certs):
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(certs["a.example"][0].read_text() + certs["b.example"][0].read_text())
    a = tls_for(tmp_path, "a.example", *certs["a.example"], cafile=bundle)
    b = tls_for(tmp_path, "b.example", *certs["b.example"], cafile=bundle)
    client, server = handshake(a.client_context("a.example"), b.server_context("b.example"),
                               "b.example")
    assert peer_certificate(client).valid_for("b.example")
    assert peer_certificate(server).valid_for("a.example")
    assert not peer_certificate(server).valid_for("c.example")
    assert peer_certificate(server).describe("c.example") == "is not valid for this name"


def test_a_peer_without_certificate(tmp_path, certs):
    b = tls_for(tmp_path, "b.example", *certs["b.example"])
    anonymous = b.client_context("nobody.example")  # no certificate of its own
    _client, server = handshake(anonymous, b.server_context("b.example"), "b.example")
    assert peer_certificate(server) == NO_CERTIFICATE
    assert NO_CERTIFICATE.describe("x.example") == "was not presented"


def test_the_struct_reads_check_the_layout_first(tmp_path, certs):
    openssl = s2s_tls._openssl()
    assert openssl is not None  # CPython with the layout the module expects
    a = tls_for(tmp_path, "a.example", *certs["a.example"])
    b = tls_for(tmp_path, "b.example", *certs["b.example"])
    client, _server = handshake(a.client_context("a.example"), b.server_context("b.example"),
                                "b.example")
    assert openssl.ssl_pointer(client._sslobj)
    # Anything but an _ssl._SSLSocket is refused before a pointer is read from it.
    assert openssl.ssl_pointer(SimpleNamespace(context=client.context)) is None
    assert openssl.verify_result(SimpleNamespace(_sslobj=object())) is None


def test_without_the_hook_handshakes_still_finish_and_nothing_validates(
        tmp_path, certs, monkeypatch):
    monkeypatch.setattr(s2s_tls, "_openssl", lambda: None)
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(certs["a.example"][0].read_text() + certs["b.example"][0].read_text())
    a = tls_for(tmp_path, "a.example", *certs["a.example"], cafile=bundle)
    b = tls_for(tmp_path, "b.example", *certs["b.example"], cafile=bundle)
    client, server = handshake(a.client_context("a.example"), b.server_context("b.example"),
                               "b.example")
    assert peer_certificate(client) == NO_CERTIFICATE == peer_certificate(server)


def test_reload_presents_the_renewed_certificate_both_ways(tmp_path, certs):
    a = tls_for(tmp_path, "a.example", *certs["a.example"])
    b = tls_for(tmp_path, "b.example", *certs["b.example"])
    old = certs["a.example"][0].read_text()
    make_self_signed(tmp_path, "a.example")  # renewed in place, same paths
    renewed = certs["a.example"][0].read_text()
    assert renewed != old
    a.reload(load_config(tmp_path / "a.example.cfg.lua"))
    client, server = handshake(a.client_context("a.example"), b.server_context("b.example"),
                               "b.example")
    assert ssl.DER_cert_to_PEM_cert(server.getpeercert(binary_form=True)).strip() == renewed.strip()
    client, _server = handshake(b.client_context("b.example"), a.server_context("a.example"),
                                "a.example")
    assert ssl.DER_cert_to_PEM_cert(client.getpeercert(binary_form=True)).strip() == renewed.strip()
