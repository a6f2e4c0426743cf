"""Training (stage 3): the OS-KDFT loop (:mod:`.trainer`), schedules, checkpoints, DDP.

Stage 3's entry point is :func:`oskdft.training.trainer.train_system`. The package imports
nothing eagerly, so the training step (:mod:`.objective`) loads without the data stack.
"""
