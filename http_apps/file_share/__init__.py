"""XEP-0363 HTTP File Upload over HTTP: slot policy, upload tokens, byte ranges and routes."""
