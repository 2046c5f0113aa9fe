"""The scenarios beyond the rooms table: the chat site, the stalled database, the smoke run."""
