"""The cluster front door of the node agent: pods and SocketSplices from the API server.

``watching`` is the watch state machine (pure, over event dicts), ``cgroups`` finds a pod's
cgroup for the kubelet's cgroup drivers and the common runtimes (pure, over a directory tree),
``locating`` turns that into a ``PodLocation`` (the netns of a process in the pod), ``source``
runs the watches with the Kubernetes client and answers ``Source.snapshot()``, and ``sink``
writes the SpliceNode. Selection, planning and the kernel side are the shared ones
(``socksplice.api.planning``, ``nodeagent.reconciling``): only the front door differs.
"""
