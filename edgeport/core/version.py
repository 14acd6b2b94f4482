"""edgeport's version: the one place it is written (pyproject.toml reads it from here)."""

__version__ = "0.1.0"


def installed_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Return the installed version of each distribution in ``names`` (None when absent)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
