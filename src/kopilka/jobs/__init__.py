"""Scheduled jobs live in services/jobs.py; run them with `kopilka jobs run`."""
