"""laida kernels: numba-compiled pure functions over arrays (no MPI, files or config)."""
