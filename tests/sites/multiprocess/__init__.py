"""The project's site plus /mp control routes, configured from MP_*: the cluster tests."""
