"""Session state machines, sans-IO: commands and replies in, actions out."""
