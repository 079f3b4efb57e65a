"""The ``tokensmith`` command: the client people run (``tokensmith.client``) and the server's
administration from its shell (``admin``, ``serve``), one command tree for both. The entry point
is ``entry.main``; the tree is ``main.py``."""
