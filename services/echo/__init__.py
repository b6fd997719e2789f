"""Echo: the benchmark baseline, a servicer with no storage built on the kit."""
