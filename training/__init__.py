"""bertbeam training package."""
