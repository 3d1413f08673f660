"""Configuration: the data model, the TOML files, and the merge with detection."""
