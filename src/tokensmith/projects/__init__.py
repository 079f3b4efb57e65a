"""Studio projects: the catalog of projects and their members' roles, each project's Git
repository, its releases, the Maven repositories they are published to, registered instances."""
