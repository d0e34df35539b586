-- Section for example.com

VirtualHost "example.com"
	enabled = true
	ssl = {
		key = "/etc/prosody/certs/example.com.key";
		certificate = "/etc/prosody/certs/example.com.crt";
	}
	http_host = "example.com"
	disco_items = {
		{ "upload.example.com", "file sharing service" };
	}

Component "upload.example.com" "http_file_share"
	http_file_share_size_limit = 16*1024*1024 -- 16 MiB
	http_file_share_daily_quota = 100*1024*1024
	http_file_share_expires_after = 31 * 24 * 60 * 60
	http_file_share_allowed_file_types = { "image/*" }

Component "conference.example.com" "muc"
	name = "Chatrooms"
	modules_enabled = { "muc_mam" }
	restrict_room_creation = "local"

Component "gateway.example.com"
	component_secret = "mysecretcomponentpassword"
