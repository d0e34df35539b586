"""Fuzz target: the BOSH <body/> parser (http_apps/bosh/body.py), fed a request body.

Documented refusal: BoshError (answered with a terminate body). Checked too: the
children of a parsed body survive xmpp.stanza.serialize and a parse back.
"""

from __future__ import annotations

import atheris

from tests.fuzz.harness import INSTRUMENTED, run, same_element

with atheris.instrument_imports(include=INSTRUMENTED):
    from http_apps.bosh.body import BoshError, parse_body
    from xmpp.stanza import serialize
    from xmpp.stream import parse_stanza

REFUSALS = (BoshError,)


def one_input(data: bytes) -> None:
    body = parse_body(data)
    _ = body.restart, body.get("rid")
    for child in body.children:
        assert same_element(child, parse_stanza(serialize(child, prefixes={})))


if __name__ == "__main__":
    run(one_input, REFUSALS, name="bosh_body", dictionary="xml.dict")
