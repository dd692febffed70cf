"""Access policy: model, YAML loader, decision engine, host firewall."""
