"""Training (stage 3): the OS-KDFT loop, schedules, checkpoints, DDP."""
