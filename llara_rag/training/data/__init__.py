"""What training reads: documents as windows, labelled groups, label-free and generated pairs, and the rows they become."""
