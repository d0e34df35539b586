-- Vireo example configuration (Prosody 0.12 syntax and option names)
--
-- This file is Lua, read the same way Prosody reads prosody.cfg.lua: options
-- set before the first VirtualHost or Component line are global; options
-- after such a line belong to that host only. A host's options fall back to
-- the global ones. app.py's `check` command loads it and reports problems.
--
-- As shipped, it runs out of the box on a fresh clone (`make run`), without
-- any certificate, for a server on "localhost". Before serving real users:
--   * set up certificates (see "Certificates" below),
--   * remove `c2s_require_encryption = false` so clients must use TLS,
--   * replace "localhost" with your domain.
--
-- Lines starting with "--" are comments. Commented-out options show their
-- default values: uncommenting them unchanged changes nothing.


---------- Server-wide settings ----------

-- Accounts with admin rights on this server (create them separately).
-- Example: admins = { "alice@localhost" }
admins = { }

-- Where Vireo keeps its data (the SQLite database, uploaded files).
-- Relative paths are relative to this file's directory.
data_path = "data"

-- Modules to load on every VirtualHost (not on Components).
modules_enabled = {
	-- Generally required
		"roster"; -- Contact lists
		"saslauth"; -- Authentication for clients
		"tls"; -- STARTTLS on client and server connections
		"disco"; -- Service discovery

	-- Recommended
		"ping"; -- Replies to XMPP pings (XEP-0199)
		"version"; -- Replies to software version requests (XEP-0092)
		"time"; -- Replies to entity time requests (XEP-0202)
		"uptime"; -- Reports how long the server has been running (XEP-0012)
		"offline"; -- Stores messages for users who are offline
		--"carbons"; -- Copies of messages to all of a user's devices (XEP-0280)
		--"mam"; -- Message archive for users (XEP-0313); see "Archive" below
		"register"; -- In-band registration and password changes (XEP-0077)
		"posix"; -- PID file and POSIX process settings

	-- Nice to have
		"pep"; -- Personal eventing: avatars, OMEMO keys, bookmarks (XEP-0163)
		"private"; -- Private XML storage, legacy bookmarks (XEP-0049)
		"blocklist"; -- Blocking contacts (XEP-0191)
		"vcard_legacy"; -- vCards, kept in PEP (XEP-0054, XEP-0292, XEP-0153)
		"bookmarks"; -- Room bookmarks, old and new clients in sync (XEP-0402, XEP-0048)
	-- Mobile clients
		--"smacks"; -- Stream management and resumption (XEP-0198)
		--"csi_simple"; -- Holds what can wait while a client is inactive (XEP-0352)
		--"cloud_notify"; -- Push notifications through app servers (XEP-0357)

	-- HTTP modules
		--"bosh"; -- XMPP over HTTP long-polling, for web clients (XEP-0206)
		--"http_files"; -- Static files from http_files_dir at /files (a web client, say)
		--"invites_page"; -- A web page for each invite link, with a QR code and apps to try
		--"register_web"; -- Sign-up form for invites that allow registration
		--"admin_web"; -- Web admin at /admin for the admins (users, sessions, uploads, invites, metrics)

	-- Modern login (see README: channel binding, SASL2, Bind 2, FAST)
		--"sasl2"; -- Extensible SASL Profile (XEP-0388)
		--"sasl2_bind2"; -- Resource binding inside SASL2 (XEP-0386)
		--"sasl2_fast"; -- Login tokens without the password (XEP-0484)

	-- Other specific functionality
		--"lastactivity"; -- How long ago contacts went offline, and their status (XEP-0012)
		--"net_proxy"; -- PROXY protocol ports behind a load balancer (see below)
}

-- FAST tokens (mod_sasl2_fast): lifetime, and age after which a login rotates one.
--sasl2_fast_token_ttl = 86400*21
--sasl2_fast_token_min_ttl = 86400

-- Modules to leave out even if listed above (or auto-loaded).
modules_disabled = {
	-- "offline";
}

-- Allow account creation from clients (see mod_register). Off by default.
--allow_registration = false

-- Where to write the process id. Unset: no PID file.
--pidfile = "vireo.pid"

-- Logging. Unset: info and above to the console (stderr).
-- A file name, "*console", "*stdout", "*stderr", "*syslog", a table of
-- level = sink, or a list of sink rules, as in Prosody:
--log = {
--	info = "vireo.log"; -- Change 'info' to 'debug' for verbose logging
--	error = "vireo.err";
--	-- "*syslog";
--	-- "*console";
--}

-- Storage. Vireo keeps accounts, rosters and upload records in SQL; without
-- an `sql` option it uses SQLite in data_path. For PostgreSQL:
--sql = { driver = "PostgreSQL", database = "vireo", username = "vireo", password = "secret", host = "localhost" }
--authentication = "internal_hashed"


---------- Client and server connections ----------

--c2s_ports = { 5222 }
--c2s_interfaces = { "*", "::" }
--c2s_direct_tls_ports = { } -- e.g. { 5223 } for TLS from the first byte (XEP-0368)
--s2s_ports = { 5269 }
--s2s_interfaces = { "*", "::" }

-- Encryption. Prosody's default requires TLS from clients; this example turns
-- it off so it runs without a certificate. Remove this line once you have one.
c2s_require_encryption = false
--s2s_require_encryption = true
--s2s_secure_auth = false
--s2s_insecure_domains = { "insecure.example" }
--s2s_secure_domains = { "jabber.org" }

-- Never offer PLAIN authentication over an unencrypted connection
-- (SCRAM still works). Keep this false.
--allow_unencrypted_plain_auth = false

-- Limits (bytes, seconds).
--c2s_stanza_size_limit = 256*1024
--s2s_stanza_size_limit = 512*1024
--c2s_timeout = 300 -- seconds to authenticate after connecting
--s2s_timeout = 90 -- seconds for a server-to-server link to come up
--s2s_idle_timeout = 300 -- close an outgoing link unused this long (reopened on demand)

-- Federation (server-to-server). Disable it with modules_disabled = { "s2s" }.
-- Dialback keys use a random secret per process; the nodes of a cluster share
-- one kept in the database unless this sets it (then the same on every node).
--dialback_secret = "a long random string"
-- DNS for finding other servers: the system's resolv.conf unless told otherwise.
--unbound = { forward = "192.0.2.53@53" }


---------- Archive (mod_mam) ----------

--default_archive_policy = true -- false, or "roster" (only contacts in the roster)
--archive_expires_after = "1w" -- "30d", "1m", "1y", seconds, or "never"
--max_archive_query_results = 50
--dont_archive_namespaces = { "http://jabber.org/protocol/chatstates" }
--mam_smart_enable = false -- true: archive only once a user's client has used MAM
--vireo_mam_queue_size = 50000 -- archive writes waiting for the database


---------- Certificates ----------
-- Every VirtualHost needs a certificate so clients and servers can verify
-- it. Put "<host>.crt" and "<host>.key" (or a directory per host) in this
-- directory, relative to this file:
--certificates = "certs"
-- Or name them explicitly:
--ssl = { certificate = "certs/localhost.crt"; key = "certs/localhost.key"; }


---------- HTTP ----------
-- The built-in HTTP server carries BOSH and file sharing.

--http_ports = { 5280 }
--http_interfaces = { "127.0.0.1", "::1" }
--https_ports = { 5281 }
--https_interfaces = { "*", "::" }
--http_default_host = "localhost"
--http_external_url = "https://xmpp.example.com/" -- when behind a reverse proxy
--http_paths = { bosh = "/http-bind"; file_share = "/file_share"; }

-- Cross-origin requests (CORS), allowed by default:
--access_control_allow_methods = { "GET", "OPTIONS" }
--access_control_allow_headers = { "Content-Type" }
--access_control_allow_credentials = false
--access_control_allow_origins = { "*" }
--access_control_max_age = 7200
--http_cors_override = { bosh = { enabled = false; }; }

-- The invite page, sign-up form and web admin (see README.md):
--site_name = "Example chat"
--invite_expiry = 86400 * 7
--password_policy = { length = 8; }
--vireo_admin_web_idle_timeout = 1800
--vireo_admin_web_secret = "a long random string" -- keeps admin logins across restarts

-- Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto headers are trusted
-- (addresses or CIDR ranges):
--trusted_proxies = { "127.0.0.1", "::1" }


---------- BOSH (mod_bosh, global options) ----------
--bosh_max_inactivity = 60
--bosh_max_wait = 120
--bosh_default_hold = 1
--bosh_max_requests = 2
--consider_bosh_secure = false -- true when a proxy terminates HTTPS in front of BOSH


---------- Static files (mod_http_files) ----------
--http_files_dir = "www" -- relative to this file's directory; unset, nothing is served
--http_index_files = { "index.html", "index.htm" }
--http_dir_listing = false -- true lists a directory without an index file
--http_files_cache_size = 128 -- small files' answers kept in memory
--http_files_cache_max_file_size = 4096 -- bytes; larger files are sent from disk
--mime_types_file = "/etc/mime.types"


---------- Mobile clients (mod_smacks, mod_csi_simple, mod_cloud_notify) ----------
--smacks_hibernation_time = 600 -- seconds a lost session waits to be resumed
--smacks_max_unacked_stanzas = 0
--smacks_max_queue_size = 500
--smacks_max_hibernated_sessions = 10 -- resumable sessions per user
--smacks_max_old_sessions = 10 -- expired sessions per user whose counter is kept
--csi_queue_size = 256
--push_notification_with_body = false
--push_notification_with_sender = false
--push_max_errors = 16
--push_max_devices = 5


---------- PROXY protocol (mod_net_proxy) ----------
-- Extra ports that expect a PROXY v1/v2 header from a trusted load balancer,
-- each mapped to the service it carries. Never expose them to the internet.
-- As in Prosody, they open only with "net_proxy" in modules_enabled above.
--proxy_port_mappings = { [15222] = "c2s"; [15269] = "s2s"; }
--proxy_ports = { 15222, 15269 }
--proxy_trusted_proxies = { "127.0.0.1", "::1" }


---------- PEP and an account's own data ----------
-- Prosody's defaults; see README.md for Vireo's own limits.
--pep_max_items = 256
--pep_max_nodes = 256
--pep_max_item_size = 131072
--pep_max_affiliations = 1000
--private_max_entries = 1000
--blocklist_max_items = 1000
--bounce_blocked_messages = true


---------- External components (XEP-0114) ----------
--component_ports = { 5347 }
--component_interfaces = { "127.0.0.1", "::1" }


---------- Several nodes (Vireo's own; see README.md) ----------
-- Nodes sharing the sql database above and one Redis; each names itself.
-- `app.py run --workers N` makes N such nodes on this machine ("<node>-<I>").
-- `address`: where the other nodes pass this one HTTP requests (BOSH) it holds.
--cluster = { redis = "redis://127.0.0.1:6379/0", node = "node1", node_timeout = 10,
--            address = "127.0.0.1" }


----------- Virtual hosts -----------
-- One VirtualHost per domain served. Options below such a line apply to it only.

VirtualHost "localhost"

--VirtualHost "example.com"
--	enabled = false -- Remove this line to enable this host

--- Guests without accounts (SASL ANONYMOUS, a random name per session):
--VirtualHost "guest.localhost"
--	authentication = "anonymous"
--	allow_anonymous_s2s = false


------ Components ------

--- HTTP file sharing (XEP-0363), on a subdomain of the host:
--Component "upload.localhost" "http_file_share"
--	http_file_share_size_limit = 10*1024*1024 -- 10 MiB per file
--	http_file_share_daily_quota = 100*1024*1024 -- per user per day
--	http_file_share_global_quota = nil -- unlimited
--	http_file_share_expires_after = 7*86400 -- one week; -1 keeps files forever
--	http_file_share_allowed_file_types = { } -- e.g. { "image/*" }; empty: any
--	http_file_share_safe_file_types = { "image/*", "video/*", "audio/*", "text/plain" }
--	http_file_share_access = { } -- extra JIDs or hosts allowed to upload
--	http_file_share_path = "/srv/vireo/uploads" -- a directory every cluster node shares

--- An external component (default component port 5347):
--Component "gateway.localhost"
--	component_secret = "password"
--	component_conflict_resolve = "kick_new" -- or "kick_old": what a second connection does


---------- End of the configuration ----------
-- Do not add global settings here: they would belong to the last
-- VirtualHost or Component above. Put them before the first VirtualHost.
