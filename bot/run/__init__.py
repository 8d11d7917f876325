"""Long-running processes."""
