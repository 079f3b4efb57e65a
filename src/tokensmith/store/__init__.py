"""Where everything is kept: the database (engines, sessions, migrations, outages), its tables,
SQLite's specifics, the data dir and its key file, and what a deployment records for its shell."""
