"""asyncio adapters: upstream transports, TLCP streams, HTTP client to the platform."""
