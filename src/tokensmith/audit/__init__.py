"""The audit trail (every action, in words), and what listens to it: the notices owners are sent
and the mail outbox that carries them."""
