"""The application: the `stepwatch` command, the app factory, the demo and the analysis schedule.

It sits on top of the house and wires the parts (collector, analysis, coaching, dashboards) on
the kernel; nothing but tests and benchmarks imports it (tests/test_layers.py).
"""
