"""The gate process role (python -m gate)."""
