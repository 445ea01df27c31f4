"""The game process role (python -m game)."""
