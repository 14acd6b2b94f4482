"""The device catalogue: real devices (``data/*.yaml``) mapped onto the engine profiles they run."""
