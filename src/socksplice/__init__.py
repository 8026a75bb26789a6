"""socksplice: splice same-node pod TCP in the kernel with sockmap, safely and measurably."""

__version__ = "0.1.0"
