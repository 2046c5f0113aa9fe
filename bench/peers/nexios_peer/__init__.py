"""Nexios itself (the ``nexios`` package) as a room broadcast peer."""
