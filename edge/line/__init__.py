"""The line itself: what each station does with the running batch (print feeding now; tracking and verdicts next)."""
