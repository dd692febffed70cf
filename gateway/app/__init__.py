"""The composition: the daemon's parts (each with start/stop), built from the configuration and wired together.
Nothing below imports this package."""
