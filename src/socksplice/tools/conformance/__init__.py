"""Conformance: spliced TCP must be indistinguishable from TCP to an application.

Each scenario runs twice between local pods, once on plain TCP and once spliced, and compares
what the application saw: the bytes and their order, the return value and errno of each call,
when EOF arrived, poll readiness. ``apps`` is the program that runs inside the pods,
``scenarios`` lists what is compared, ``running`` drives both runs, ``rendering`` prints the
table, the JSON document and docs/conformance.md, ``command`` is ``socksplice conformance``.
"""
