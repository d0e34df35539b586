"""Certificate lookup and SNI contexts (xmpp/tls.py), with in-memory handshakes."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.certs import make_self_signed
from xmpp.config import load_config
from xmpp.tls import (
    CertificateFinder,
    SniContexts,
    TlsConfigError,
    find_certificate,
    server_context,
)

# -- a fake of the xmpp.config API, just the getters xmpp.tls uses -----------


@dataclass
class FakeHost:
    name: str
    config: FakeConfig
    options: dict[str, Any] = field(default_factory=dict)
    kind: str = "VirtualHost"
    enabled: bool = True

    def get(self, name: str, default: Any = None) -> Any:
        if name in self.options:
            return self.options[name]
        return self.config.get(name, default)


@dataclass
class FakeConfig:
    base_dir: Path
    globals: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, FakeHost] = field(default_factory=dict)

    def add(self, name: str, kind: str = "VirtualHost", enabled: bool = True,
            **options: Any) -> FakeHost:
        self.hosts[name] = FakeHost(name, self, options, kind, enabled)
        return self.hosts[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.globals.get(name, default)

    def resolve_path(self, value: str) -> Path:
        return self.base_dir / value

    def host(self, name: str) -> FakeHost | None:
        return self.hosts.get(name)


@pytest.fixture
def config(tmp_path: Path) -> FakeConfig:
    return FakeConfig(tmp_path)


def certs_dir(config: FakeConfig) -> Path:
    return config.base_dir / "certs"


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


# -- in-memory TLS --------------------------------------------------------------


def handshake(server: ssl.SSLContext, server_name: str | None,
              trust: list[Path] | None = None) -> bytes:
    """Run a client/server handshake over MemoryBIOs; return the server's DER cert."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trust:
        for cert in trust:
            client.load_verify_locations(cert)
    else:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=server_name)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {c: False, s: False}
    for _ in range(20):
        for end in (c, s):
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            break
    assert all(done.values()), "handshake did not finish"
    peer = c.getpeercert(binary_form=True)
    assert peer is not None
    return peer


# -- automatic location -----------------------------------------------------------


def test_host_files_in_certs_folder(config):
    cert, key = make_self_signed(certs_dir(config), "example.com")
    assert find_certificate(config, "example.com") == (cert, key)
    assert find_certificate(config, "EXAMPLE.com.") == (cert, key)


def test_fullchain_layout_found_by_file_name(config):
    folder = certs_dir(config) / "example.com"
    cert, key = make_self_signed(folder, "other.name")  # name not covered: no index hit
    cert = cert.rename(folder / "fullchain.pem")
    key = key.rename(folder / "privkey.pem")
    assert find_certificate(config, "example.com") == (cert, key)


def test_combined_pem_file(config):
    cert, key = make_self_signed(config.base_dir / "tmp", "other.name")
    combined = certs_dir(config) / "example.com.pem"
    combined.parent.mkdir()
    combined.write_text(key.read_text() + cert.read_text())
    assert find_certificate(config, "example.com") == (combined, combined)


def test_certificates_option_moves_the_folder(config):
    cert, key = make_self_signed(config.base_dir / "tls", "example.com")
    assert find_certificate(config, "example.com") is None
    config.globals["certificates"] = "tls"
    assert find_certificate(config, "example.com") == (cert, key)


def test_index_finds_certificates_by_the_names_they_cover(config):
    cert, key = make_self_signed(certs_dir(config) / "le", "mail", ["example.com", "example.org"])
    assert find_certificate(config, "example.org") == (cert, key)


def test_wildcard_certificate_covers_subdomains(config):
    cert, key = make_self_signed(certs_dir(config), "*.example.com")
    assert find_certificate(config, "chat.example.com") == (cert, key)
    assert find_certificate(config, "example.com") is None


def test_subdomain_falls_back_to_parent_domain(config):
    cert, key = make_self_signed(certs_dir(config), "example.com")
    assert find_certificate(config, "upload.example.com") == (cert, key)
    assert find_certificate(config, "a.b.example.com") == (cert, key)


def test_expired_certificates_are_not_indexed(config):
    cert, key = make_self_signed(certs_dir(config), "holder", ["example.com"], days=1)
    assert CertificateFinder(config).find("example.com") == (cert, key)
    assert CertificateFinder(config, now=4e9).find("example.com") is None


def test_index_needs_the_matching_key(config):
    _cert, key = make_self_signed(certs_dir(config), "holder", ["example.com"])
    key.unlink()
    assert find_certificate(config, "example.com") is None


def test_host_certificate_option_may_name_a_file(config):
    cert, key = make_self_signed(config.base_dir / "elsewhere", "something")
    config.add("example.com", certificate="elsewhere/something.crt")
    assert find_certificate(config, "example.com") == (cert, key)


# -- explicit tables and their precedence ---------------------------------------------


@pytest.fixture
def three(config):
    """An automatic certificate for example.com and two explicit ones."""
    auto = make_self_signed(certs_dir(config), "example.com")
    glob = make_self_signed(config.base_dir / "global", "global")
    own = make_self_signed(config.base_dir / "own", "own")
    return auto, glob, own


def table(pair: tuple[Path, Path], base: Path) -> dict[str, str]:
    return {"certificate": str(pair[0].relative_to(base)), "key": str(pair[1].relative_to(base))}


def test_starttls_explicit_global_ssl_beats_automatic(config, three):
    auto, glob, own = three
    config.add("example.com")
    assert find_certificate(config, "example.com") == auto
    config.globals["ssl"] = table(glob, config.base_dir)
    assert find_certificate(config, "example.com") == glob
    config.hosts["example.com"].options["ssl"] = table(own, config.base_dir)
    assert find_certificate(config, "example.com") == own


def test_service_table_beats_host_table(config, three):
    _auto, glob, own = three
    config.add("example.com", ssl=table(own, config.base_dir))
    config.globals["c2s_ssl"] = table(glob, config.base_dir)
    assert find_certificate(config, "example.com", service="c2s") == own  # over global c2s_ssl
    config.hosts["example.com"].options["c2s_ssl"] = table(glob, config.base_dir)
    assert find_certificate(config, "example.com", service="c2s") == glob


def test_component_uses_parent_hosts_ssl_table(config, three):
    _auto, _glob, own = three
    config.add("example.com", ssl=table(own, config.base_dir))
    config.add("conference.example.com", kind="Component")
    assert find_certificate(config, "conference.example.com") == own


def test_direct_tls_automatic_beats_global_ssl(config, three):
    auto, glob, own = three
    config.add("example.com")
    config.globals["ssl"] = table(glob, config.base_dir)
    assert find_certificate(config, "example.com", service="https") == auto
    assert find_certificate(config, "unknown.test", service="https") == glob
    config.hosts["example.com"].options["https_ssl"] = table(own, config.base_dir)
    assert find_certificate(config, "example.com", service="https") == own


def test_fields_merge_from_weaker_tables(config, three):
    _auto, glob, _own = three
    config.globals["ssl"] = {"certificate": str(glob[0]), "key": str(glob[1])}
    config.add("example.com", ssl={"ciphers": "HIGH", "protocol": "tlsv1_3"})
    settings = CertificateFinder(config).settings("example.com")
    assert settings == {"certificate": glob[0], "key": glob[1],
                        "ciphers": "HIGH", "protocol": "tlsv1_3"}


def test_certificate_without_key_is_an_error(config, three):
    config.globals["ssl"] = {"certificate": "global/global.crt"}
    with pytest.raises(TlsConfigError, match="no key"):
        find_certificate(config, "nowhere.test")


def test_ssl_option_must_be_a_table(config):
    config.globals["ssl"] = "certs/example.com.crt"
    with pytest.raises(TlsConfigError, match="table"):
        find_certificate(config, "example.com")


# -- contexts -----------------------------------------------------------------------------


def test_server_context_defaults(tmp_path):
    cert, key = make_self_signed(tmp_path, "example.com")
    ctx = server_context(cert, key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert handshake(ctx, "example.com", trust=[cert]) == der(cert)


def test_server_context_protocol_and_profile(tmp_path):
    cert, key = make_self_signed(tmp_path, "example.com")
    only13 = server_context(cert, key, protocol="tlsv1_3")
    assert only13.minimum_version == only13.maximum_version == ssl.TLSVersion.TLSv1_3
    assert server_context(cert, key, profile="modern").minimum_version == ssl.TLSVersion.TLSv1_3
    # Prosody's "tlsv1+" would allow TLS 1.0; Vireo keeps 1.2 as the floor.
    assert server_context(cert, key, protocol="tlsv1+").minimum_version == ssl.TLSVersion.TLSv1_2
    server_context(cert, key, ciphers=["ECDHE-ECDSA-AES128-GCM-SHA256", "HIGH"])
    with pytest.raises(TlsConfigError):
        server_context(cert, key, protocol="sslv3")
    with pytest.raises(TlsConfigError):
        server_context(cert, key, profile="paranoid")
    with pytest.raises(TlsConfigError):
        server_context(cert, key, ciphers="NO-SUCH-CIPHER")


def test_server_context_reports_unreadable_files(tmp_path):
    cert, key = make_self_signed(tmp_path, "example.com")
    with pytest.raises(TlsConfigError, match="cannot load"):
        server_context(cert, tmp_path / "missing.key")
    with pytest.raises(TlsConfigError, match="cannot load"):
        server_context(key, key)


@pytest.fixture
def two_hosts(config):
    a = make_self_signed(certs_dir(config), "a.example")
    b = make_self_signed(certs_dir(config), "b.example")
    config.add("a.example")
    config.add("b.example")
    config.add("nocert.test")
    config.add("off.example", enabled=False)
    return a, b


def test_sni_picks_the_named_hosts_certificate(config, two_hosts):
    (a_cert, _), (b_cert, _) = two_hosts
    sni = SniContexts(config, service="c2s_direct_tls")
    assert sni.missing == ["nocert.test"]
    assert sni.errors == []
    front = sni.server_context()
    assert front is not None
    assert handshake(front, "a.example", trust=[a_cert]) == der(a_cert)
    assert handshake(front, "b.example", trust=[b_cert]) == der(b_cert)
    assert handshake(front, "B.EXAMPLE", trust=[b_cert]) == der(b_cert)


def test_sni_unknown_or_absent_name_gets_the_default(config, two_hosts):
    (a_cert, _), _b = two_hosts
    sni = SniContexts(config, service="c2s_direct_tls")
    front = sni.server_context()
    assert front is not None
    assert handshake(front, "elsewhere.test") == der(a_cert)  # first VirtualHost
    assert handshake(front, None) == der(a_cert)


def test_service_certificate_is_the_ports_default(config, two_hosts):
    service_cert, _ = make_self_signed(certs_dir(config), "https")
    sni = SniContexts(config, service="https")
    front = sni.server_context()
    assert front is not None
    assert handshake(front, None) == der(service_cert)


def test_sni_required_without_a_default(config):
    # Only a component has a certificate: no port default, so SNI must name it.
    cert, _ = make_self_signed(certs_dir(config), "upload.test")
    config.add("upload.test", kind="Component")
    sni = SniContexts(config, service="c2s_direct_tls")
    assert sni.default is None
    front = sni.server_context()
    assert front is not None
    assert handshake(front, "upload.test", trust=[cert]) == der(cert)
    with pytest.raises(ssl.SSLError):
        handshake(front, None)


def test_https_serves_hosts_under_their_http_host(config, two_hosts):
    web_cert, _ = make_self_signed(certs_dir(config), "www.a.example")
    config.hosts["a.example"].options["http_host"] = "www.a.example"
    sni = SniContexts(config, service="https")
    assert sni.context_for("a.example") is None
    front = sni.server_context()
    assert front is not None
    assert handshake(front, "www.a.example", trust=[web_cert]) == der(web_cert)


def test_hosts_sharing_a_certificate_share_a_context(config):
    make_self_signed(certs_dir(config), "example.com")
    config.add("example.com")
    config.add("upload.example.com", kind="Component")
    sni = SniContexts(config)
    assert sni.context_for("upload.example.com") is sni.context_for("example.com") is not None
    assert sni.context_for("other.test") is None


def test_broken_files_are_reported_per_host(config, two_hosts):
    _a, (_b_cert, b_key) = two_hosts
    b_key.write_text("not a key\n")
    sni = SniContexts(config)
    assert sni.context_for("b.example") is None
    assert len(sni.errors) == 1 and sni.errors[0].startswith("b.example: ")


def test_no_certificates_at_all(config):
    config.add("example.com")
    sni = SniContexts(config, service="https")
    assert sni.missing == ["example.com"]
    assert sni.default is None
    assert sni.server_context() is None


def test_with_a_real_lua_config(tmp_path):
    a_cert, _ = make_self_signed(tmp_path / "certs", "a.example")
    own = make_self_signed(tmp_path / "own", "b.example")
    (tmp_path / "prosody.cfg.lua").write_text(
        'tls_profile = "intermediate"\n'
        'VirtualHost "a.example"\n'
        'VirtualHost "b.example"\n'
        '  ssl = { certificate = "own/b.example.crt"; key = "own/b.example.key" }\n'
        'Component "conference.b.example" "muc"\n'
    )
    config = load_config(tmp_path / "prosody.cfg.lua")
    assert find_certificate(config, "a.example") == (a_cert, a_cert.with_suffix(".key"))
    assert find_certificate(config, "conference.b.example") == own
    sni = SniContexts(config, service="c2s_direct_tls")
    assert sni.missing == [] and sni.errors == []
    front = sni.server_context()
    assert front is not None
    assert handshake(front, "conference.b.example") == der(own[0])
