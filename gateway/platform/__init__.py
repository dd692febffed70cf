"""The national interface: envelope, transaction catalogue, session, signing profiles."""
