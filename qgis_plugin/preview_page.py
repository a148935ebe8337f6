"""The preview picture's page for Processing's Results Viewer: ``NAME.html`` beside ``NAME.png``
that shows it, so the picture opens with one click from the viewer."""
from __future__ import annotations

import html
import os
import urllib.parse


def preview_page(png: str, title: str) -> str:
    """An HTML page beside the preview PNG (NAME.html) that shows it: Processing lists HTML
    outputs in its Results Viewer, so the picture opens from there with one click."""
    page = os.path.splitext(png)[0] + ".html"
    uri = "file://" + urllib.parse.quote(os.path.abspath(png))
    with open(page, "w", encoding="utf-8") as f:
        f.write(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
                f"</title></head><body><h3>{html.escape(title)}</h3>"
                f"<img src=\"{html.escape(uri)}\" alt=\"preview\"></body></html>\n")
    return page
