"""socksplice node agent: pod watch, cgroup resolution, BPF lifecycle, metrics."""
