"""RFC 6120 3.2 resolution against a real (test) DNS server: SRV order, fallbacks, options."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from tests.integration.fake_dns import FakeDns
from xmpp.resolver import (
    DEFAULT_PORT,
    Resolver,
    ResolverConfigError,
    ResolverSettings,
    parse_forwarder,
    settings_from_config,
)


@pytest.fixture(scope="module")
def dns():
    server = FakeDns()
    server.add_srv("srv.example", "backup.srv.example", 5270, priority=20)
    server.add_srv("srv.example", "main.srv.example", 5269, priority=10, weight=1)
    server.add_srv("srv.example", "main2.srv.example", 5271, priority=10, weight=1)
    server.add_srv("none.example", ".", 0)
    server.add_address("main.srv.example", "127.0.0.2")
    server.add_address("main.srv.example", "::1")
    server.add_address("plain.example", "127.0.0.3")
    server.start()
    yield server
    server.stop()


def resolver(dns, **settings) -> Resolver:
    return Resolver(ResolverSettings(forward=(("127.0.0.1", dns.port),), resolvconf=None,
                                     timeout=3, **settings), rng=random.Random(3))


def test_srv_targets_come_in_priority_order(dns):
    targets = resolver(dns).targets("srv.example")
    assert set(targets[:2]) == {("main.srv.example", 5269), ("main2.srv.example", 5271)}
    assert targets[2] == ("backup.srv.example", 5270)


def test_no_srv_falls_back_to_the_domain_on_5269(dns):
    assert resolver(dns).targets("plain.example") == [("plain.example", DEFAULT_PORT)]
    assert resolver(dns).targets("missing.example") == [("missing.example", DEFAULT_PORT)]


def test_dot_srv_target_means_no_xmpp_service(dns):
    assert resolver(dns).targets("none.example") == []


def test_addresses_of_a_host(dns):
    assert resolver(dns).addresses("main.srv.example") == ["127.0.0.2", "::1"]
    assert resolver(dns, families=("A",)).addresses("main.srv.example") == ["127.0.0.2"]
    assert resolver(dns).addresses("missing.example") == []
    assert resolver(dns).addresses("192.0.2.7") == ["192.0.2.7"]


def test_hosts_file_answers_first(dns, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# test\n127.0.0.9  main.srv.example other\n")
    assert resolver(dns, hoststxt=str(hosts)).addresses("MAIN.srv.example") == ["127.0.0.9"]


def config(values: dict):
    return SimpleNamespace(get=lambda name, default=None: values.get(name, default),
                           get_bool=lambda name, default: values.get(name, default),
                           get_number=lambda name, default, min=None: values.get(name, default))


def test_unbound_option_forward_and_defaults():
    settings = settings_from_config(config({"unbound": {"forward": "127.0.0.1@5300"}}))
    assert settings.forward == (("127.0.0.1", 5300),)
    assert settings.resolvconf is None and settings.hoststxt is None
    settings = settings_from_config(config({}))
    assert settings.forward == () and settings.resolvconf == "/etc/resolv.conf"
    settings = settings_from_config(config({"unbound": {
        "forward": ["::1@53", "192.0.2.1"], "resolvconf": True, "hoststxt": "/tmp/h"},
        "use_ipv6": False, "dns_timeout": 4}))
    assert settings.forward == (("::1", 53), ("192.0.2.1", 53))
    assert settings.resolvconf == "/etc/resolv.conf" and settings.hoststxt == "/tmp/h"
    assert settings.families == ("A",) and settings.timeout == 4


@pytest.mark.parametrize("bad", ["dns.example@53", "127.0.0.1@0", "127.0.0.1@x"])
def test_bad_forwarders_are_refused(bad):
    with pytest.raises(ResolverConfigError):
        parse_forwarder(bad)
