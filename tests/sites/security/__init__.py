"""The project's site plus GET /sec/stats: security, fuzz and leak tests."""
