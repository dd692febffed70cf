"""The relay: forwarding, durable outbox, retry, resolution by query and reversal."""
