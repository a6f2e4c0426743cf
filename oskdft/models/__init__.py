"""Models: SSL teachers, the OS-KDFT student with adapter branches, ECAPA-TDNN. No file I/O."""
