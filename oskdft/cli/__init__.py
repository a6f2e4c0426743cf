"""Command-line plumbing: shared argparse groups, the `oskdft` console command and its text."""
