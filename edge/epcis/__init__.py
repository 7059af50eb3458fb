"""EPCIS: events from the store, documents, event hash IDs, checks before upload, outbox and delivery."""
