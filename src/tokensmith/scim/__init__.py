"""SCIM 2.0 provisioning (RFC 7643, 7644): what the identity provider creates, changes and
deactivates, its resources, filters and PATCH operations."""
