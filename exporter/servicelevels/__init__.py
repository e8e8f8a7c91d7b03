"""servicelevels."""
