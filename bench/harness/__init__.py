"""Running the systems: server processes, their services, launching one system, measuring it."""
