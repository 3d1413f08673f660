"""The long-running daemon: configuration generations, reload, stop, statistics, control."""
