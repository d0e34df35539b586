"""QR codes drawn server-side as inline SVG (segno)."""

from __future__ import annotations

import io

import segno
from markupsafe import Markup


def qr_svg(data: str, title: str) -> Markup:
    """An <svg> element (no XML declaration) showing `data` as a QR code."""
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=5,
                                     border=4, title=title, dark="#000", light="#fff",
                                     svgclass="qr")
    return Markup(out.getvalue().decode())  # segno's own markup
