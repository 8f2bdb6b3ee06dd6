"""Browser tests: the dashboard (web/dist) in Debian's Chromium, driven by Playwright, against
the local stack and its demo market."""
