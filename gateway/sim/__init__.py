"""The platform simulator: the national interface with a ledger and fault injection."""
