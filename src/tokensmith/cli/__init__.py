"""The ``tokensmith`` command: server administration (and, later, the client)."""
