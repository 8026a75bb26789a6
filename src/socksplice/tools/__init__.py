"""Tools that run beside the product, never inside it: benchmarks, the conformance suite, the demo,
the kernel matrix and the load-generator wrappers. The runtime (``api``, ``bpf``, ``kernel``,
``doctor``, ``local``, ``nodeagent``, ``operator``) never imports this package; import-linter
checks it."""
