"""Experiments a student runs to see the ideas of asynchronous I/O in the sandbox (docs/async-io.md).

Each module measures one idea on the sandbox's own machinery and returns plain
numbers (and, through matplotlib when the ``plot`` extra is installed, a PNG):
what a doorbell costs, how fsync batching trades throughput for durability
latency.  They sit beside the fuzzer, above the world they build: they compose
machines, they are not part of one, and the command line imports them, never
the reverse.
"""
