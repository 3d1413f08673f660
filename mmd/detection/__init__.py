"""Which milters are installed and enabled on this host, and where their sockets are."""
