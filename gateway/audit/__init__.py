"""SM3 hash-chained, append-only audit log."""
