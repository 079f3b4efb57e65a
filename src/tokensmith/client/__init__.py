"""The command-line client people run on laptops and in CI: login, whoami, tokens, git's
credential helper, Maven settings, Studio projects.

It imports nothing of the server (no FastAPI, SQLAlchemy, Alembic, Authlib, nor any
``tokensmith`` module outside this package), so that ``tokensmith git-credential get``, which
git runs on every fetch and push, starts as fast as a small Python program can.
"""
