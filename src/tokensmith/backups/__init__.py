"""Backup and restore of a whole deployment (``tokensmith backup create|verify|restore``).

- archive.py: the backup file (frames, members, the manifest), sealing.py: how each frame is
  encrypted with a passphrase, or checksummed;
- snapshot.py: taking a backup while the server runs, at one moment; store_copies.py (the store:
  SQLite's online backup, PostgreSQL's exported snapshot and pg_dump, postgres_tools.py),
  git_copies.py (the repositories, as bundles);
- restore.py: verifying a file and restoring it into an empty data dir and store;
- revocation_journal.py: every revocation also kept apart from the store, replayed after a
  restore so that no token revoked after the backup comes back to life.

docs/architecture.md, "Backups and restore", says why each is as it is.
"""
