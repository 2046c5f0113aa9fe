"""Several daphne processes on one Redis and one database: rooms, history, presence across processes."""
