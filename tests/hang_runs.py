"""What the real hung runs (test_hang's and test_faults' resumed run) wait and allow."""

HANG_TIMEOUT_S = 3.0
"""Their collective_timeout_s: each waits it out once; short, yet above a loaded machine's
slowest step (a rank late by it would be told as a hang)."""

TOLD_WITHIN_S = 4.0
"""How far past the timeout the watch may tell the hang: its poll is 0.25 s, but on a
loaded host its thread wakes late (the issue's "a few seconds")."""
