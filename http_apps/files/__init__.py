"""Prosody's mod_http_files (net/http/files.lua): static files from a directory over HTTP.

`paths` turns a request path into one under the directory, or refuses it;
`mime` gives a file's Content-Type from its extension; `service` answers GET and
HEAD (validators, 304, index files, redirects, a small-file cache, sendfile for the
rest) as plain WSGI routes under the app's mount path (http_apps.plain).
"""
