"""HTTP adapters around the domain: no business rule lives here."""
