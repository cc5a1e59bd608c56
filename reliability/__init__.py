"""The reliability suite (``make reliability``): faults, floods, garbage, SIGTERM and a soak
against every server under ``aisetl serve``, every object accounted for."""
