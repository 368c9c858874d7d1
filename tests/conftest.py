"""Project-wide pytest configuration: shared fixtures live in plugin modules."""

pytest_plugins = ["tests.triton_fixtures"]
