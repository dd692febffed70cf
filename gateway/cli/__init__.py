"""The `ybgate` command: main.py parses and dispatches; one module per command or command group."""
