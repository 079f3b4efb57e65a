"""People and how they prove who they are: users and passwords, authentication of any
credential, browser sessions, the sign-in throttle, the identity provider and the accounts it
makes, the device login of the client, and the first start."""
