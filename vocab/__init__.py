"""bertbeam vocab package."""
