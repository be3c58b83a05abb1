"""`breach serve`: webhooks from monitoring, provider receipts, health."""
