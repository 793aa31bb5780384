"""Data audit: scan a folder, find leaks, near-duplicates and suspected label errors, report."""
