-- A configuration in the shape Debian's prosody 0.12 package installs as
-- /etc/prosody/prosody.cfg.lua, with a host file under conf.d/. Every option
-- here is one Prosody knows, so it must load without a single warning.

---------- Server-wide settings ----------

admins = { "admin@example.com" }

--plugin_paths = {}

modules_enabled = {
	-- Generally required
		"disco"; -- Service discovery
		"roster"; -- Rosters
		"saslauth"; -- Authentication
		"tls"; -- STARTTLS

	-- Not essential, but recommended
		"blocklist";
		"bookmarks";
		"carbons";
		"dialback";
		"limits";
		"pep";
		"private";
		"smacks";
		"vcard4";
		"vcard_legacy";

	-- Nice to have
		"csi_simple";
		"invites";
		"invites_adhoc";
		"invites_register";
		"ping";
		"register";
		"time";
		"uptime";
		"version";
		--"mam";

	-- Admin interfaces
		"admin_adhoc";
		"admin_shell";

	-- HTTP modules
		--"bosh";
		--"websocket";

	-- Debian: keep the POSIX module for the PID file and daemonising
		"posix";
}

modules_disabled = {
	-- "offline";
	-- "c2s";
	-- "s2s";
}

pidfile = "/run/prosody/prosody.pid"

allow_registration = false

c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
--s2s_insecure_domains = { "insecure.example" }
--s2s_secure_domains = { "jabber.org" }

limits = {
	c2s = {
		rate = "10kb/s";
	};
	s2sin = {
		rate = "30kb/s";
	};
}

authentication = "internal_hashed"

--storage = "sql"
--sql = { driver = "SQLite3", database = "prosody.sqlite" }

archive_expires_after = "1w"

log = {
	info = "/var/log/prosody/prosody.log";
	error = "/var/log/prosody/prosody.err";
	-- "*syslog";
}

-- statistics = "internal"

certificates = "certs"

http_ports = { 5280 }
http_interfaces = { "127.0.0.1", "::1" }
https_ports = { 5281 }
consider_bosh_secure = true
trusted_proxies = { "127.0.0.1", "::1", "192.168.10.0/24" }
http_cors_override = {
	bosh = {
		enabled = false;
	};
}

proxy_port_mappings = {
	[15222] = "c2s";
	[15269] = "s2s";
}
proxy_ports = { 15222, 15269 }
proxy_trusted_proxies = { "127.0.0.1", "::1" }

component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }

----------- Virtual hosts -----------

VirtualHost "localhost"

------ Components ------

--Component "conference.example.com" "muc"
--	modules_enabled = { "muc_mam" }

------ Additional configuration files ------
-- Debian keeps one file per host under conf.d/ (symlinked from conf.avail/).

Include "conf.d/*.cfg.lua"
