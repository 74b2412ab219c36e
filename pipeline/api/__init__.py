"""The REST server: routes, and the checks on what clients may make it read."""
