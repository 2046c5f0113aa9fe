"""Live presence: who is in a room right now, as members see it (``presence_state``/``presence_diff``)."""
