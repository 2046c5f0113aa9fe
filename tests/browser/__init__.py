"""The chat pages in headless Chromium against a real daphne."""
