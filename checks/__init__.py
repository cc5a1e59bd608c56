"""Opt-in checks against real third-party software (not part of ``make test``)."""
