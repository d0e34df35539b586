"""Self-signed test certificates made with the openssl command line.

The `cryptography` package is not a dependency, so this shells out to
`openssl req -x509` (OpenSSL 1.1.1 or later for -addext). EC P-256 keys keep
generation fast enough to make certificates per test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path


def make_self_signed(dir: Path, hostname: str, alt_names: Iterable[str] = (),
                     *, days: int = 30) -> tuple[Path, Path]:
    """Write `<hostname>.crt` and `<hostname>.key` into `dir`; return (cert, key).

    The certificate's CN is `hostname` and its subjectAltName lists `hostname`
    and `alt_names` as DNS names. A `*` in `hostname` becomes `_` in the file
    names. The certificate is its own CA, so a client can trust it with
    `load_verify_locations(cert)`.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    stem = hostname.replace("*", "_")
    cert, key = dir / f"{stem}.crt", dir / f"{stem}.key"
    names = ",".join(f"DNS:{name}" for name in (hostname, *alt_names))
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", str(days),
         "-subj", f"/CN={hostname}", "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key
