"""The ``nats`` connector kind, split by job; ``nats_source`` is its entry point."""
