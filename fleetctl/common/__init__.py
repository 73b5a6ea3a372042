"""Small shared helpers: errors, paths, atomic writes, locks, subprocesses."""
