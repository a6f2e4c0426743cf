"""Command-line plumbing: shared argparse groups and the `oskdft` console command."""
