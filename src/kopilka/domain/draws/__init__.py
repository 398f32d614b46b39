"""Contests and prize draws with verifiable fairness.

* :mod:`definition`: what a draw is (window, entry rules, prizes, draw date), validated.
* :mod:`entries`: which receipts make entries and how many, in the tenant's time zone.
* :mod:`fairness`: the commitment to the seed, pseudonyms, the frozen list's hash and the
  deterministic pick; the service and ``kopilka draw verify`` share it.
* :mod:`texts`: what members see, in ru and en.
"""
