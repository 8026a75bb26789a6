"""Thin, typed access to host kernel facilities (cgroup2, bpffs, network namespaces)."""
