"""Reports: ``report.json`` (versioned, the source of truth) and HTML rendered from it."""
