"""Support code shared by the unit, integration, system and VM tests."""
