"""Daily reconciliation (对账): the outbox's settlements against the platform's, and a difference list."""
