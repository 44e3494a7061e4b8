"""bertbeam transforms package."""
