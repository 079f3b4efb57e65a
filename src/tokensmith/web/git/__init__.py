"""Git smart HTTP: the routes, git's backends started and piped here, and the pre-receive hook's
way back to the request (push protection)."""
