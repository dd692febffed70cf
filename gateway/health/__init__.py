"""Health: metrics, MQTT, probes, host figures, systemd notify."""
