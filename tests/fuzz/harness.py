"""Runs one fuzz target under atheris (libFuzzer), its documented refusals swallowed.

A target module `fuzz_<name>.py` defines `one_input(data: bytes)` and
`REFUSALS`, the exceptions its parser documents as the answer to bad input; any
other exception, an assertion of the target included, is a finding that
libFuzzer reports and saves as a crash file. Its committed seeds are
corpus/<name>/, added after the corpus directories given; dicts/ holds the
libFuzzer dictionaries. Run a target from the repository root:

    python -m tests.fuzz.fuzz_stream -max_total_time=60 NEW_CORPUS_DIR
    python -m tests.fuzz.fuzz_stream CRASH_FILE          # replay one input
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from xml.etree.ElementTree import Element

import atheris

#: Packages whose code atheris instruments for coverage.
INSTRUMENTED = ["xmpp", "http_apps"]


def same_element(a: Element, b: Element) -> bool:
    """Structural equality: tag, attributes, text, tails and children."""
    return (a.tag == b.tag and a.attrib == b.attrib and (a.text or "") == (b.text or "")
            and (a.tail or "") == (b.tail or "") and len(a) == len(b)
            and all(same_element(x, y) for x, y in zip(a, b, strict=True)))


HERE = os.path.dirname(os.path.abspath(__file__))


def libfuzzer_args(argv: list[str], name: str, dictionary: str | None) -> list[str]:
    """`argv` plus the target's dictionary and, when fuzzing corpus directories, its seeds."""
    args = list(argv)
    if dictionary and not any(arg.startswith("-dict=") for arg in args):
        args.append(f"-dict={os.path.join(HERE, 'dicts', dictionary)}")
    if any(os.path.isdir(arg) for arg in args[1:] if not arg.startswith("-")):
        args.append(os.path.join(HERE, "corpus", name))
    return args


def run(one_input: Callable[[bytes], None], refusals: tuple[type[BaseException], ...],
        *, name: str, dictionary: str | None = None) -> None:
    """Fuzz `one_input` with the command line's libFuzzer options; never returns."""

    def guarded(data: bytes) -> None:
        with contextlib.suppress(*refusals):
            one_input(data)

    atheris.Setup(libfuzzer_args(sys.argv, name, dictionary), guarded)
    atheris.Fuzz()
