"""The dispatcher process role (python -m dispatcher)."""
