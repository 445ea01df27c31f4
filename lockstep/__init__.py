"""The lockstep process (``python -m lockstep -lockstepid 1``): frame-sync rooms, docs/LOCKSTEP-DESIGN.md."""
