"""I/O adapters: the only place that talks to systemd, D-Bus, the journal and sockets."""
