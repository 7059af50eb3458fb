"""Serial numbers, batches and reconciliation: the per-serial state machine kept durable in the store."""
