"""Prosody's mod_http_files: the files of a directory over HTTP (RFC 9110 GET and HEAD).

The HTTP app "files" is mounted at /files (`http_paths.files` moves it) on the
hosts loading the module, each with its own options (host section, else
global): `http_files_dir` (relative to the config file's directory; unset, the
module serves nothing and says so), `http_index_files` ({"index.html",
"index.htm"}), `http_dir_listing` (false), `http_files_cache_size` (128
answers), `http_files_cache_max_file_size` (4096 bytes), `mime_types_file`
(/etc/mime.types). CORS as any app without settings of its own
(`http_default_cors_enabled`, `http_cors_override.files`). The answers are
http_apps.files.service's, served as plain WSGI routes under the mount path.
"""

from __future__ import annotations

from http_apps.files.service import provider
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    m.depends("http")  # the HTTP ports open, even with no directory to serve
    files = provider(m.config, m.host.name)
    if files is not None:
        m.provides("http", files)
