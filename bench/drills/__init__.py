"""Robustness drills that pass or fail: overload (small limits flooded) and soak (minutes of mixed load while
versions come and go). Their short forms run in the tests."""
