"""What the tests share: waits, the sites' environment, raw sockets, cluster clients, fakes, fixtures."""
