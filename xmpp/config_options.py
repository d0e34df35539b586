"""Prosody 0.12 configuration option names, for unknown-option warnings.

The set is deliberately generous: an option Prosody or one of its bundled
modules understands must load without a warning, even when Vireo ignores it,
so that a real Prosody config can be pointed at Vireo unchanged. Names are
Prosody's, verbatim.
"""

KNOWN_OPTIONS: frozenset[str] = frozenset({
    # Core: process, paths, plugins, debugging
    "admins", "pidfile", "daemonize", "run_as_root", "prosody_user", "prosody_group", "umask",
    "data_path", "plugin_paths", "installer_plugin_path", "log", "debug", "syslog_facility",
    "gc", "error_library", "force_module_reload", "enabled", "name",
    # Modules
    "modules_enabled", "modules_disabled", "component_module", "load_global_modules",
    # Network: interfaces, backends, DNS
    "interfaces", "interface", "local_interfaces", "external_addresses", "use_ipv4", "use_ipv6",
    "network_backend", "network_settings", "network_default_read_size", "use_libevent",
    "tcp_keepalives", "unbound", "use_dane", "dns_timeout",
    "connectivity_probe", "ports",
    # Client-to-server
    "c2s_ports", "c2s_interfaces", "c2s_interface", "c2s_ssl", "c2s_timeout",
    "c2s_close_timeout", "c2s_stanza_size_limit", "c2s_tcp_keepalives",
    "c2s_require_encryption", "require_encryption",
    "c2s_direct_tls_ports", "c2s_direct_tls_interfaces", "c2s_direct_tls_ssl",
    "legacy_ssl_ports", "legacy_ssl_interfaces", "legacy_ssl_interface", "legacy_ssl_ssl",
    "ssl_ports",
    # Server-to-server
    "s2s_ports", "s2s_interfaces", "s2s_interface", "s2s_ssl", "s2s_timeout",
    "s2s_close_timeout", "s2s_stanza_size_limit", "s2s_tcp_keepalives",
    "s2s_require_encryption", "s2s_allow_encryption", "s2s_secure_auth",
    "s2s_insecure_domains", "s2s_secure_domains", "s2s_direct_tls_ports",
    "s2s_direct_tls_interfaces", "s2s_direct_tls_ssl", "s2s_dns_resolvers",
    "allow_anonymous_s2s", "disallow_s2s", "dialback_secret",
    "s2s_unauthed_stanza_size_limit", "s2s_max_child_elements",
    "s2s_idle_timeout",  # community mod_s2s_idle_timeout; Vireo closes idle links itself
    # Components (XEP-0114)
    "component_ports", "component_interfaces", "component_interface", "component_ssl",
    "component_secret", "component_conflict_resolve", "component_stanza_size_limit",
    "component_tcp_keepalives", "component_admins_as_room_owners",
    # Multiplexing and the admin console
    "multiplex_ports", "multiplex_interfaces", "multiplex_buffer_size",
    "multiplex_ssl_ports", "multiplex_ssl_interfaces",
    "console_ports", "console_interfaces", "console_banner", "console_prettyprint_settings",
    "admin_socket", "admin_shell_prompt",
    # TLS and certificates
    "ssl", "certificates", "certificate", "tls_profile", "ssl_compression",
    "client_https_ssl",
    # Authentication and SASL
    "authentication", "authorization", "allow_unencrypted_plain_auth",
    "disable_sasl_mechanisms", "insecure_sasl_mechanisms", "insecure_open_authentication",
    "anonymous_login", "password_hash", "default_iteration_count", "realm",
    "ldap_server", "ldap_rootdn", "ldap_password", "ldap_base", "ldap_filter",
    "ldap_scope", "ldap_tls", "ldap_mode", "ldap_admins", "ldap_admin_filter",
    "sasl2_fast_token_ttl", "sasl2_fast_token_min_ttl",  # community mod_sasl2_fast
    # Storage
    "storage", "default_storage", "sql", "sql_manage_tables", "storage_async_check",
    "storage_memory_temporary", "storage_memory_temporary_stores",
    "storage_archive_item_limit", "storage_archive_item_limit_cache_size",
    "allow_anonymous_storage",
    # Registration and invites
    "allow_registration", "min_seconds_between_registrations", "registration_allowlist",
    "registration_blocklist", "registration_whitelist", "registration_blacklist",
    "allowlist_registration_only", "whitelist_registration_only",
    "blocklist_on_registration_throttle_overload",
    "blacklist_on_registration_throttle_overload", "registration_throttle_max",
    "registration_throttle_period", "registration_throttle_cache_size",
    "registration_compat", "registration_from", "registration_instructions",
    "registration_invite_only", "registration_title", "registration_notification",
    "registration_notification_type", "registration_watchers", "additional_registration_fields",
    "allow_contact_invites", "allow_user_invites", "allow_user_invites_by_roles",
    "deny_user_invites_by_roles", "allow_unaffiliated_register", "invite_expiry",
    "invites_page_module", "user_tombstone_expiry", "tombstone_cache_size",
    # prosody-modules' mod_invites_page, mod_register_web, mod_password_policy
    "site_name", "invites_page", "invites_page_external", "invites_registration_page",
    "password_policy",
    # Rate limits
    "limits", "limits_resolution", "unlimited_jids",
    # HTTP server (mod_http), CORS, reverse proxies
    "http_ports", "http_interfaces", "http_interface", "http_ssl",
    "https_ports", "https_interfaces", "https_interface", "https_ssl", "https_certificate",
    "http_host", "http_default_host", "http_external_url", "http_paths", "http_path",
    "http_max_content_size", "http_max_buffer_size", "http_cors_override",
    "http_default_cors_enabled", "trusted_proxies",
    "access_control_allow_methods", "access_control_allow_headers",
    "access_control_allow_credentials", "access_control_allow_origins",
    "access_control_max_age",
    "http_errors_always_show", "http_errors_default_message", "http_errors_detailed",
    "http_errors_messages",
    "http_files_dir", "http_dir_listing", "http_index_files", "http_files_cache_size",
    "http_files_cache_max_file_size", "mime_types_file",
    # BOSH (mod_bosh) and WebSocket (mod_websocket)
    "bosh_max_inactivity", "bosh_max_polling", "bosh_max_wait", "bosh_default_hold",
    "bosh_max_requests", "consider_bosh_secure", "cross_domain_bosh",
    "consider_websocket_secure", "cross_domain_websocket", "websocket_frame_buffer_limit",
    "websocket_frame_fragment_limit", "websocket_get_response_body",
    "websocket_get_response_text",
    # HTTP file sharing (mod_http_file_share)
    "http_file_share_size_limit", "http_file_share_daily_quota",
    "http_file_share_global_quota", "http_file_share_allowed_file_types",
    "http_file_share_safe_file_types", "http_file_share_expires_after",
    "http_file_share_access", "http_file_share_base_url", "http_file_share_secret",
    "http_file_share_path",
    # PROXY protocol (mod_net_proxy)
    "proxy_ports", "proxy_interfaces", "proxy_port_mappings", "proxy_trusted_proxies",
    # Statistics and metrics
    "statistics", "statistics_interval", "statistics_config",
    "openmetrics_allow_ips", "openmetrics_allow_cidr",
    # Discovery, contact info, version, ping, time
    "disco_items", "disco_hidden", "disco_expose_admins", "contact_info", "hide_os_type",
    "os_version_command",
    # Presence, messages, offline, carbons, CSI, stream management
    "ignore_presence_priority", "bounce_blocked_messages", "blocklist_cache_size",
    "offline_expire_after", "max_offline_messages", "validate_from_addresses",
    "csi_important_payloads", "csi_queue_size", "csi_resume_inactive_delay",
    "smacks_hibernation_time", "smacks_max_unacked_stanzas", "smacks_max_ack_delay",
    "smacks_max_inactive_unacked_stanzas", "smacks_max_old_sessions",
    "smacks_max_queue_size", "smacks_enabled_s2s", "smacks_s2s_resend",
    # prosody-modules' mod_smacks and mod_cloud_notify (XEP-0357 push)
    "smacks_max_hibernated_sessions", "push_notification_with_body",
    "push_notification_with_sender", "push_notification_important_body", "push_max_errors",
    "push_max_devices", "push_max_hibernation_timeout",
    # Archives (mod_mam), PEP, pubsub, vCards, bookmarks
    "archive_expires_after", "archive_store", "default_archive_policy",
    "archive_cleanup_date_cache_size", "dont_archive_namespaces",
    "max_archive_query_results", "mam_include_total", "mam_smart_enable",
    "pep_max_items", "pep_info_cache_size", "pep_service_cache_size",
    "pubsub_max_items", "pubsub_summary_templates", "autocreate_on_publish",
    "autocreate_on_subscribe", "expose_publisher", "upgrade_legacy_bookmarks",
    "upgrade_legacy_vcards",
    # Multi-user chat (mod_muc and friends)
    "restrict_room_creation", "max_history_messages", "muc_log_all_rooms",
    "muc_log_by_default", "muc_log_expires_after", "muc_log_cleanup_date_cache_size",
    "muc_log_include_total", "muc_log_presences", "muc_max_nick_length",
    "muc_max_occupants", "muc_max_rooms", "muc_occupant_id",
    "muc_registration_include_form", "muc_room_allow_persistent", "muc_room_allow_public",
    "muc_room_cache_size", "muc_room_default_allow_member_invites",
    "muc_room_default_change_subject", "muc_room_default_history_length",
    "muc_room_default_language", "muc_room_default_members_only",
    "muc_room_default_moderated", "muc_room_default_persistent",
    "muc_room_default_presence_broadcast", "muc_room_default_public",
    "muc_room_default_public_jids", "muc_room_lock_timeout", "muc_room_locking",
    "muc_tombstone_expiry", "muc_tombstones", "new_muc_storage_format",
    "default_admin_affiliation", "enforce_registered_nickname",
    # SOCKS5 bytestreams (mod_proxy65)
    "proxy65_ports", "proxy65_interfaces", "proxy65_address", "proxy65_port",
    "proxy65_acl", "proxy65_open_access",
    # External services (STUN/TURN)
    "external_services", "external_service_host", "external_service_port",
    "external_service_secret", "external_service_ttl", "external_service_access",
    "turn_external_host", "turn_external_port", "turn_external_secret",
    "turn_external_tcp", "turn_external_tls_port", "turn_external_ttl", "turn_external_user",
    # Announcements, groups, welcome messages
    "motd_text", "motd_jid", "welcome_message", "groups_file",
    # Tooling and HTTP client limits read by prosodyctl and the network layer
    "body_size_limit", "buffer_size_limit", "plugin_server", "prosodyctl_timeout",
    # Obsolete or deprecated names that prosodyctl still recognises
    "archive_cleanup_interval", "muc_log_cleanup_interval", "setgid", "setuid",
    "no_daemonize", "vcard_compatibility", "bosh_port", "bosh_ports", "bosh_interface",
    "bosh_interfaces", "bosh_ssl", "legacy_ssl_port",
    # Vireo's own options (no Prosody equivalent)
    "vireo_auth_failure_limit", "vireo_auth_failure_window", "vireo_auth_failure_delay",
    "vireo_auth_failure_max_delay", "vireo_auth_failure_max_waiting",
    "c2s_unauthenticated_stanza_size_limit",
    "vireo_http_file_share_prune_interval",
    "vireo_register_web_secret", "vireo_register_web_attempts", "vireo_register_web_window",
    "vireo_register_web_delay", "vireo_admin_web_secret", "vireo_admin_web_idle_timeout",
    "vireo_admin_web_sample_interval",
    "vireo_mam_queue_size", "vireo_mam_query_burst", "vireo_mam_query_rate",
    "vireo_muc_presence_burst", "vireo_muc_presence_rate",
    "pep_max_nodes", "pep_max_item_size", "pep_max_affiliations", "private_max_entries",
    "blocklist_max_items",
    "vireo_proxy_header_timeout",
    "cluster",
})
