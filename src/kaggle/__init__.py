"""Everything that talks to Kaggle: the one client, the competition's files, the kernel."""
