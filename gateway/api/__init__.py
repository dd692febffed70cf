"""HTTP/1.1 API for HIS on a Unix socket (and optional TCP), admin endpoints."""
