"""CORS headers with Prosody 0.12's options, defaults and per-app overrides."""

from __future__ import annotations

from tests.http_fixtures import http_client, probe

BASE = 'VirtualHost "example.com"\n'
ORIGIN = {"Origin": "https://web.example"}


def allowed(reply, name):
    return {item.strip() for item in reply.headers[name].split(",")}


def test_defaults_echo_the_origin(tmp_path):
    c = http_client(tmp_path, BASE, [probe()])
    reply = c.get("/probe", headers=ORIGIN)
    assert reply.headers["Access-Control-Allow-Origin"] == "https://web.example"
    assert allowed(reply, "Access-Control-Allow-Methods") == {"GET", "OPTIONS", "POST", "PUT"}
    assert reply.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert reply.headers["Access-Control-Max-Age"] == "7200"
    assert "Access-Control-Allow-Credentials" not in reply.headers


def test_without_origin_the_star(tmp_path):
    reply = http_client(tmp_path, BASE, [probe()]).get("/probe")
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_is_200_with_empty_body(tmp_path):
    c = http_client(tmp_path, BASE, [probe()])
    reply = c.options("/probe/upload", headers={
        **ORIGIN, "Access-Control-Request-Method": "POST"})
    assert reply.status_code == 200
    assert reply.data == b""
    assert reply.headers["Access-Control-Allow-Origin"] == "https://web.example"
    assert "POST" in allowed(reply, "Access-Control-Allow-Methods")


def test_options_change_the_headers(tmp_path):
    text = ('access_control_allow_methods = { "GET", "DELETE" }\n'
            'access_control_allow_headers = { "Content-Type", "Authorization" }\n'
            'access_control_allow_credentials = true\n'
            'access_control_max_age = 60\n' + BASE)
    reply = http_client(tmp_path, text, [probe(methods=("PATCH",))]).get("/probe", headers=ORIGIN)
    assert allowed(reply, "Access-Control-Allow-Methods") == {
        "GET", "DELETE", "PATCH", "POST", "PUT"}
    assert allowed(reply, "Access-Control-Allow-Headers") == {"Content-Type", "Authorization"}
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert reply.headers["Access-Control-Max-Age"] == "60"


def test_origins_list(tmp_path):
    text = 'access_control_allow_origins = { "https://web.example" }\n' + BASE
    c = http_client(tmp_path, text, [probe()])
    assert c.get("/probe", headers=ORIGIN).headers["Access-Control-Allow-Origin"] == (
        "https://web.example")
    refused = c.get("/probe", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 200
    assert not [h for h, _ in refused.headers.items() if h.startswith("Access-Control-")]


def test_origins_list_with_star_allows_any(tmp_path):
    text = 'access_control_allow_origins = { "https://a.example", "*" }\n' + BASE
    reply = http_client(tmp_path, text, [probe()]).get("/probe", headers=ORIGIN)
    assert reply.headers["Access-Control-Allow-Origin"] == "https://web.example"


def test_override_disables_one_app(tmp_path):
    text = 'http_cors_override = { probe = { enabled = false } }\n' + BASE
    c = http_client(tmp_path, text, [probe(), probe("other", cors=True)])
    assert "Access-Control-Allow-Origin" not in c.get("/probe", headers=ORIGIN).headers
    assert "Access-Control-Allow-Origin" in c.get("/other", headers=ORIGIN).headers


def test_module_can_disable_and_override_enables(tmp_path):
    c = http_client(tmp_path, BASE, [probe(cors=False)])
    assert "Access-Control-Allow-Origin" not in c.get("/probe", headers=ORIGIN).headers
    text = ('http_cors_override = { probe = { enabled = true; credentials = true;'
            ' headers = { Authorization = true; ["Content-Type"] = false };'
            ' origins = { "https://web.example" } } }\n' + BASE)
    reply = http_client(tmp_path, text, [probe(cors=False)]).get("/probe", headers=ORIGIN)
    assert reply.headers["Access-Control-Allow-Origin"] == "https://web.example"
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert reply.headers["Access-Control-Allow-Headers"] == "Authorization"


def test_override_methods_list_replaces_but_keeps_route_methods(tmp_path):
    text = 'http_cors_override = { probe = { enabled = true; methods = { "GET" } } }\n' + BASE
    reply = http_client(tmp_path, text, [probe()]).get("/probe", headers=ORIGIN)
    assert allowed(reply, "Access-Control-Allow-Methods") == {"GET", "POST", "PUT"}


def test_module_settings_table(tmp_path):
    cors = {"enabled": True, "credentials": True, "headers": {"Authorization": True}}
    reply = http_client(tmp_path, BASE, [probe(cors=cors)]).get("/probe", headers=ORIGIN)
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert allowed(reply, "Access-Control-Allow-Headers") == {"Content-Type", "Authorization"}


def test_default_cors_can_be_switched_off(tmp_path):
    text = "http_default_cors_enabled = false\n" + BASE
    c = http_client(tmp_path, text, [probe(), probe("bosh", cors=True)])
    assert "Access-Control-Allow-Origin" not in c.get("/probe", headers=ORIGIN).headers
    assert "Access-Control-Allow-Origin" in c.get("/bosh", headers=ORIGIN).headers


def test_never_a_duplicated_allow_origin(tmp_path):
    reply = http_client(tmp_path, BASE, [probe()]).get("/probe/own-cors", headers=ORIGIN)
    assert reply.headers.getlist("Access-Control-Allow-Origin") == ["https://web.example"]


def test_errors_of_the_app_carry_cors_but_unknown_paths_do_not(tmp_path):
    c = http_client(tmp_path, BASE, [probe(max_body_size=1)])
    too_big = c.post("/probe/upload", data=b"xx", headers=ORIGIN)
    assert too_big.status_code == 413
    assert too_big.headers["Access-Control-Allow-Origin"] == "https://web.example"
    assert "Access-Control-Allow-Origin" not in c.get("/elsewhere", headers=ORIGIN).headers
