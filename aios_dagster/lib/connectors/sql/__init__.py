"""The ``sql`` connector kind, split by job; ``sql_source`` is its entry point."""
