"""The project's site plus the /e2e routes of the seed documents' examples."""
