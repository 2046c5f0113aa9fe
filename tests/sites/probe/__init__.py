"""The multiprocess site plus /probe/{room}/, the fault-probe room."""
