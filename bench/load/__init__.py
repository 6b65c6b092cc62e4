"""Speed and memory: the service, its peers, startup, the client, bulk generation, the models' kernels and
training throughput, each printing the tables of BENCHMARKS.md (``performance`` runs the goals of issue #19
in one go)."""
