"""The milter wire protocol (versions 2 to 6), sans-IO: bytes in, messages out."""
